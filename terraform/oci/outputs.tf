output "urls" {
  description = "Tarn's HTTP API in each region, through its load balancer."
  value       = { (local.a) = module.region_a.url, (local.b) = module.region_b.url }
}

output "load_balancers" {
  description = "Each region's load balancer address: HTTP on 80, MySQL on 3306, Flight SQL on 50051."
  value       = { (local.a) = module.region_a.load_balancer_ip, (local.b) = module.region_b.load_balancer_ip }
}

output "buckets" {
  description = "Each region's own bucket and its replica in the other region."
  value = {
    (local.a) = { own = oci_objectstorage_bucket.own_a.name, replica_of_other = oci_objectstorage_bucket.replica_a.name }
    (local.b) = { own = oci_objectstorage_bucket.own_b.name, replica_of_other = oci_objectstorage_bucket.replica_b.name }
  }
}

output "admin_token_secret" {
  description = "Where the admin token lives: oci secrets secret-bundle get --secret-id <this> --query 'data.\"secret-bundle-content\".content' --raw-output | base64 -d"
  value       = oci_vault_secret.admin_token.id
}

output "drill" {
  description = "The failover drill against the two deployed instances."
  value       = "TARN_TOKEN=\"$(oci secrets secret-bundle get --secret-id ${oci_vault_secret.admin_token.id} --query 'data.\"secret-bundle-content\".content' --raw-output | base64 -d)\" tarn drill failover --instance ${module.region_a.url} --instance ${module.region_b.url} --region ${local.a}"
}
