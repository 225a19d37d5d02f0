variable "name" {
  description = "The bucket's name."
  type        = string
}

variable "kms_key_arn" {
  description = "The customer-managed key objects are encrypted with."
  type        = string
}

variable "noncurrent_version_days" {
  description = "Days an old version is kept."
  type        = number
}
