variable "tenancy_ocid" {
  description = "The tenancy's OCID."
  type        = string
  validation {
    condition     = startswith(var.tenancy_ocid, "ocid1.tenancy.")
    error_message = "A tenancy OCID starts with ocid1.tenancy."
  }
}

variable "compartment_ocid" {
  description = "The compartment everything goes in."
  type        = string
  validation {
    condition     = startswith(var.compartment_ocid, "ocid1.compartment.") || startswith(var.compartment_ocid, "ocid1.tenancy.")
    error_message = "A compartment OCID starts with ocid1.compartment. (or the tenancy's, for the root compartment)."
  }
}

variable "home_region" {
  description = "The tenancy's home region, where identity resources are written."
  type        = string
}

variable "regions" {
  description = "The two OCI regions Tarn runs in, active/active, e.g. [\"us-ashburn-1\", \"us-chicago-1\"]."
  type        = list(string)
  validation {
    condition     = length(var.regions) == 2 && var.regions[0] != var.regions[1]
    error_message = "Give exactly two different regions."
  }
}

variable "oci_profile" {
  description = "Profile of ~/.oci/config Terraform authenticates with."
  type        = string
  default     = "DEFAULT"
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

variable "binary_url_expires" {
  description = "When the read-only pre-authenticated URLs of the binary expire (RFC 3339)."
  type        = string
  default     = "2027-12-31T00:00:00Z"
}

variable "shape" {
  description = "Compute shape in both regions (flexible)."
  type        = string
  default     = "VM.Standard.E5.Flex"
}

variable "ocpus" {
  description = "OCPUs per instance."
  type        = number
  default     = 2
}

variable "memory_gbs" {
  description = "Memory per instance in GB; Tarn's memory_limit is 75% of it."
  type        = number
  default     = 32
  validation {
    condition     = var.memory_gbs >= 4
    error_message = "Give Tarn at least 4 GB."
  }
}

variable "data_volume_gb" {
  description = "Size of each instance's data volume (50 GB at least)."
  type        = number
  default     = 50
}

variable "tls_secrets" {
  description = "TLS for every door, served by Tarn itself: Vault secrets (OCIDs, in the instance's region) holding the PEM certificate chain and key, by region name; empty: plain text."
  type        = map(object({ cert = string, key = string }))
  default     = {}
  validation {
    condition     = length(var.tls_secrets) == 0 || length(var.tls_secrets) == 2
    error_message = "Give TLS secrets for both regions, or for neither."
  }
}

variable "allowed_cidrs" {
  description = "Client address ranges the load balancers admit (no default: say who may connect)."
  type        = list(string)
  validation {
    condition     = alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "Every entry must be a CIDR block, e.g. \"203.0.113.0/24\"."
  }
}
