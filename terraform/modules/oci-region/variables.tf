variable "name" {
  description = "Prefix of every resource's name, e.g. \"tarn-us-ashburn-1\"."
  type        = string
}

variable "region" {
  description = "The OCI region this instance runs in (its provider's)."
  type        = string
}

variable "compartment_ocid" {
  description = "Compartment every resource goes in."
  type        = string
}

variable "vcn_cidr" {
  description = "Address range of the region's VCN."
  type        = string
  default     = "10.70.0.0/16"
}

variable "shape" {
  description = "Compute shape (a flexible one)."
  type        = string
  default     = "VM.Standard.E5.Flex"
}

variable "ocpus" {
  description = "OCPUs of the flexible shape."
  type        = number
  default     = 2
}

variable "memory_gbs" {
  description = "Memory of the flexible shape in GB; Tarn's memory_limit is 75% of it."
  type        = number
  default     = 32
}

variable "data_volume_gb" {
  description = "Size of the persistent data volume (at least 50 GB on OCI)."
  type        = number
  default     = 50
}

variable "allowed_cidrs" {
  description = "Client address ranges the load balancer admits."
  type        = list(string)
}

variable "kms_key_id" {
  description = "The region's Vault key (volumes)."
  type        = string
}

variable "namespace" {
  description = "The tenancy's Object Storage namespace."
  type        = string
}

variable "own_bucket" {
  description = "The bucket this region writes to (snapshots go under tarn-snapshots/)."
  type        = string
}

variable "binary_url" {
  description = "Read-only pre-authenticated URL of the Tarn release binary."
  type        = string
  sensitive   = true
}

variable "admin_token_secret_id" {
  description = "Vault secret (in this region) holding the admin token."
  type        = string
}

variable "s3_key_secret_id" {
  description = "Vault secret (in this region) holding the S3-compatible key as \"<access key>:<secret>\"."
  type        = string
}

variable "tls_secrets" {
  description = "Vault secrets holding the PEM certificate chain and key Tarn serves TLS with; null: plain text."
  type        = object({ cert = string, key = string })
  default     = null
}

variable "tarn" {
  description = "What every instance's tarn.toml shares: regions' endpoints, replica mapping, allowed locations."
  type = object({
    regions           = map(object({ endpoint = string }))
    replicas          = list(object({ primary_region = string, primary_location = string, replica_region = string, replica_location = string }))
    allowed_locations = list(string)
  })
}
