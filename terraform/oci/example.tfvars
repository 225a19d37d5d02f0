# terraform apply -var-file=example.tfvars (copy it and set your own values)
tenancy_ocid     = "ocid1.tenancy.oc1..aaaaexample"
compartment_ocid = "ocid1.compartment.oc1..aaaaexample"
home_region      = "us-ashburn-1"
regions          = ["us-ashburn-1", "us-chicago-1"]
name             = "tarn"
tarn_binary      = "../../target/release/tarn"
shape            = "VM.Standard.E5.Flex"
ocpus            = 2
memory_gbs       = 32
allowed_cidrs    = ["203.0.113.0/24"]
# TLS served by Tarn on every door, from PEM secrets in each region's Vault:
# tls_secrets = {
#   "us-ashburn-1" = { cert = "ocid1.vaultsecret.oc1.iad...", key = "ocid1.vaultsecret.oc1.iad..." }
#   "us-chicago-1" = { cert = "ocid1.vaultsecret.oc1.us-chicago-1...", key = "ocid1.vaultsecret.oc1.us-chicago-1..." }
# }
