variable "regions" {
  description = "The two AWS regions Tarn runs in, active/active, e.g. [\"us-east-1\", \"us-west-2\"]."
  type        = list(string)
  validation {
    condition     = length(var.regions) == 2 && var.regions[0] != var.regions[1]
    error_message = "Give exactly two different regions."
  }
}

variable "name" {
  description = "Prefix of every resource's name."
  type        = string
  default     = "tarn"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "Lower-case letters, digits and dashes, 2 to 21 characters, starting with a letter."
  }
}

variable "tarn_binary" {
  description = "Path of the Tarn release binary to deploy (cargo build --release -p tarn-service; Linux x86_64)."
  type        = string
  validation {
    condition     = fileexists(var.tarn_binary)
    error_message = "The binary is not there: build it with `cargo build --release -p tarn-service`."
  }
}

variable "instance_type" {
  description = "EC2 instance type in both regions; Tarn's memory_limit is 75% of its memory."
  type        = string
  default     = "r6i.large"
}

variable "data_volume_gb" {
  description = "Size of each instance's data volume."
  type        = number
  default     = 50
}

variable "allowed_cidrs" {
  description = "Client address ranges the load balancers admit (no default: say who may connect)."
  type        = list(string)
  validation {
    condition     = alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "Every entry must be a CIDR block, e.g. \"203.0.113.0/24\"."
  }
}

variable "tls_secrets" {
  description = "TLS for every door, served by Tarn itself: Secrets Manager secrets (ARNs, in the instance's region) holding the PEM certificate chain and key, by region name; empty: plain text."
  type        = map(object({ cert = string, key = string }))
  default     = {}
  validation {
    condition     = length(var.tls_secrets) == 0 || length(var.tls_secrets) == 2
    error_message = "Give TLS secrets for both regions, or for neither."
  }
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object's old version is kept."
  type        = number
  default     = 30
}
