terraform {
  required_version = ">= 1.11"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
  }
}

provider "aws" {
  alias  = "a"
  region = var.regions[0]
}

provider "aws" {
  alias  = "b"
  region = var.regions[1]
}
