output "urls" {
  description = "Tarn's HTTP API in each region, through its load balancer."
  value       = { (var.regions[0]) = module.region_a.url, (var.regions[1]) = module.region_b.url }
}

output "load_balancers" {
  description = "Each region's load balancer: HTTP on 80, MySQL on 3306, Flight SQL on 50051."
  value       = { (var.regions[0]) = module.region_a.load_balancer_dns, (var.regions[1]) = module.region_b.load_balancer_dns }
}

output "buckets" {
  description = "Each region's bucket (replicated both ways)."
  value       = { (var.regions[0]) = module.bucket_a.id, (var.regions[1]) = module.bucket_b.id }
}

output "admin_token_secret" {
  description = "Where the admin token lives: aws secretsmanager get-secret-value --secret-id <this> --query SecretString --output text"
  value       = aws_secretsmanager_secret.admin_token.arn
}

output "drill" {
  description = "The failover drill against the two deployed instances."
  value       = "TARN_TOKEN=\"$(aws secretsmanager get-secret-value --region ${var.regions[0]} --secret-id ${aws_secretsmanager_secret.admin_token.arn} --query SecretString --output text)\" tarn drill failover --instance ${module.region_a.url} --instance ${module.region_b.url} --region ${var.regions[0]}"
}
