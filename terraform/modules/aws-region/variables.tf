variable "name" {
  description = "Prefix of every resource's name, e.g. \"tarn-us-east-1\"."
  type        = string
}

variable "region" {
  description = "The AWS region this instance runs in (its provider's)."
  type        = string
}

variable "vpc_cidr" {
  description = "Address range of the region's VPC."
  type        = string
  default     = "10.60.0.0/16"
}

variable "instance_type" {
  description = "EC2 instance type; Tarn's memory_limit is 75% of its memory."
  type        = string
  default     = "r6i.large"
}

variable "data_volume_gb" {
  description = "Size of the persistent data volume (catalog, tokens, local state)."
  type        = number
  default     = 50
}

variable "allowed_cidrs" {
  description = "Client address ranges the load balancer admits."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "The region's customer-managed key (volumes, logs)."
  type        = string
}

variable "own_bucket" {
  description = "The bucket this region writes to (snapshots go under tarn-snapshots/)."
  type        = object({ name = string, arn = string })
}

variable "read_buckets" {
  description = "Every bucket the instance reads (its own and the other region's copy)."
  type        = list(object({ name = string, arn = string }))
}

variable "bucket_kms_key_arns" {
  description = "Keys the read buckets are encrypted with (decrypt only)."
  type        = list(string)
}

variable "binary_key" {
  description = "Key of the Tarn release binary in own_bucket (uploaded by the root module)."
  type        = string
}

variable "admin_token_secret_arn" {
  description = "Secrets Manager secret holding the admin token (replicated to this region)."
  type        = string
}

variable "tarn" {
  description = "What every instance's tarn.toml shares: regions' endpoints, replica mapping, allowed locations."
  type = object({
    regions           = map(object({ endpoint = string }))
    replicas          = list(object({ primary_region = string, primary_location = string, replica_region = string, replica_location = string }))
    allowed_locations = list(string)
  })
}

variable "tls_secrets" {
  description = "Secrets Manager secrets holding the PEM certificate chain and key Tarn serves TLS with; null: plain text."
  type        = object({ cert = string, key = string })
  default     = null
}
