# terraform apply -var-file=example.tfvars (copy it and set your own values)
regions       = ["us-east-1", "us-west-2"]
name          = "tarn"
tarn_binary   = "../../target/release/tarn"
instance_type = "r6i.large"
allowed_cidrs = ["203.0.113.0/24"]
# TLS served by Tarn on every door, from PEM secrets in each region's Secrets Manager:
# tls_secrets = {
#   "us-east-1" = { cert = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tarn-tls-cert-AbCdEf", key = "arn:...:tarn-tls-key-..." }
#   "us-west-2" = { cert = "arn:aws:secretsmanager:us-west-2:123456789012:secret:tarn-tls-cert-GhIjKl", key = "arn:...:tarn-tls-key-..." }
# }
