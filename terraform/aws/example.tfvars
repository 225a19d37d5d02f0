# terraform apply -var-file=example.tfvars (copy it and set your own values)
regions       = ["us-east-1", "us-west-2"]
name          = "tarn"
tarn_binary   = "../../target/release/tarn"
instance_type = "r6i.large"
allowed_cidrs = ["203.0.113.0/24"]
# tls_certificate_arns = { "us-east-1" = "arn:aws:acm:us-east-1:123456789012:certificate/...", "us-west-2" = "..." }
