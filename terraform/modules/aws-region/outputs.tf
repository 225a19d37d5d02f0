output "url" {
  description = "Tarn's HTTP API through the load balancer."
  value       = "${local.tls ? "https" : "http"}://${aws_lb.tarn.dns_name}"
}

output "load_balancer_dns" {
  description = "The load balancer's name: MySQL on 3306, Flight SQL on 50051."
  value       = aws_lb.tarn.dns_name
}

output "instance_id" {
  description = "The Tarn instance."
  value       = aws_instance.tarn.id
}

output "tarn_toml" {
  description = "The instance's tarn.toml."
  value       = module.config.toml
}
