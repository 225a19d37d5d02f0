output "url" {
  description = "Tarn's HTTP API through the load balancer."
  value       = "${local.tls ? "https" : "http"}://${local.lb_ip}"
}

output "load_balancer_ip" {
  description = "The load balancer's address: MySQL on 3306, Flight SQL on 50051."
  value       = local.lb_ip
}

output "instance_id" {
  description = "The Tarn instance (for the dynamic group)."
  value       = oci_core_instance.tarn.id
}

output "tarn_toml" {
  description = "The instance's tarn.toml."
  value       = module.config.toml
}

locals {
  lb_ip = [for a in oci_network_load_balancer_network_load_balancer.tarn.ip_addresses : a.ip_address if a.is_public][0]
}
