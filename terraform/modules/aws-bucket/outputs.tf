output "id" {
  description = "The bucket's name (once its versioning is on: replication may follow)."
  value       = aws_s3_bucket_versioning.lake.bucket
}

output "arn" {
  description = "The bucket's ARN."
  value       = aws_s3_bucket.lake.arn
}
