terraform {
  required_version = ">= 1.11"
  required_providers {
    oci = {
      source  = "oracle/oci"
      version = "~> 7.0"
    }
  }
}

# Authentication comes from ~/.oci/config (the profile below) or the OCI_* variables.
provider "oci" {
  alias               = "a"
  region              = var.regions[0]
  config_file_profile = var.oci_profile
}

provider "oci" {
  alias               = "b"
  region              = var.regions[1]
  config_file_profile = var.oci_profile
}

# Identity (users, groups, dynamic groups, policies) is written in the tenancy's home region.
provider "oci" {
  alias               = "home"
  region              = var.home_region
  config_file_profile = var.oci_profile
}
