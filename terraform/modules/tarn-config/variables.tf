variable "instance_name" {
  description = "What `SELECT @@hostname` answers, and the instance's name in logs and metrics."
  type        = string
}

variable "listen" {
  description = "HTTP address."
  type        = string
  default     = "0.0.0.0:8080"
}

variable "mysql_listen" {
  description = "MySQL protocol address; \"\" turns the door off."
  type        = string
  default     = "0.0.0.0:3306"
}

variable "flight_listen" {
  description = "Arrow Flight SQL address; \"\" turns the door off."
  type        = string
  default     = "0.0.0.0:50051"
}

variable "data_dir" {
  description = "Where Tarn keeps its catalog, tokens and local state (a persistent volume)."
  type        = string
  default     = "/var/lib/tarn"
}

variable "memory_limit" {
  description = "Memory Tarn may hold, e.g. \"12GiB\" (derived from the shape by the region modules)."
  type        = string
}

variable "home_region" {
  description = "The region this instance runs in: it reads the copies held there."
  type        = string
}

variable "allowed_locations" {
  description = "Location prefixes tables may name."
  type        = list(string)
}

variable "snapshot_location" {
  description = "Where the instance writes its snapshots (its own region's bucket)."
  type        = string
}

variable "tls_cert" {
  description = "Path of the certificate chain on the instance; \"\" serves plain text."
  type        = string
  default     = ""
}

variable "tls_key" {
  description = "Path of the certificate's key on the instance."
  type        = string
  default     = ""
}

variable "regions" {
  description = "Every region's S3-compatible endpoint, by region name."
  type        = map(object({ endpoint = string }))
}

variable "replicas" {
  description = "Which bucket in which region holds a copy of which."
  type = list(object({
    primary_region   = string
    primary_location = string
    replica_region   = string
    replica_location = string
  }))
}

variable "probe_interval" {
  description = "How often each region's store is probed."
  type        = string
  default     = "5s"
}

variable "failure_threshold" {
  description = "Failures in a row after which a region is failed over."
  type        = number
  default     = 3
}

variable "failback_after" {
  description = "How long a failed-over region must answer every probe before it is used again."
  type        = string
  default     = "2m"
}
