# One region's lake bucket: private, versioned (replication needs it), encrypted with the
# region's key, old versions expired.
resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_18:server access logs need a separate log bucket; CloudTrail data events cover audit where required
  #checkov:skip=CKV2_AWS_62:Tarn finds changes by listing (refresh); no event notifications are needed
  #checkov:skip=CKV_AWS_144:replication is configured in the root module, both ways (aws_s3_bucket_replication_configuration)
  bucket = var.name
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  depends_on = [aws_s3_bucket_versioning.lake]
  bucket     = aws_s3_bucket.lake.id
  rule {
    id     = "old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}
