//! AWS credentials for S3 and OCI's S3-compatible endpoint: aws-config's default chain
//! (environment, shared profile, SSO, web identity, container and instance metadata), or one
//! named profile, bridged into object_store's credential provider and cached until shortly
//! before they expire. Credentials never leave this module except inside signed requests.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::CredentialProvider;
use object_store::aws::AwsCredential;
use tokio::sync::Mutex;

/// Renew this long before expiry.
const EARLY_RENEWAL: Duration = Duration::from_secs(300);

pub struct AwsChain {
    provider: SharedCredentialsProvider,
    /// What the chain was asked for, for messages (`default chain`, `profile 'x'`).
    source: String,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl std::fmt::Debug for AwsChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsChain")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl AwsChain {
    /// The default chain, or only the named profile (its shared config and credentials files).
    pub async fn load(profile: Option<&str>) -> Option<Self> {
        let (provider, source) = match profile {
            Some(p) => (
                SharedCredentialsProvider::new(
                    aws_config::profile::ProfileFileCredentialsProvider::builder()
                        .profile_name(p)
                        .build(),
                ),
                format!("profile '{p}'"),
            ),
            None => (
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .load()
                    .await
                    .credentials_provider()?,
                "the default credential chain".to_string(),
            ),
        };
        Some(Self {
            provider,
            source,
            cached: Mutex::new(None),
        })
    }
}

#[async_trait]
impl CredentialProvider for AwsChain {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((c, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|e| {
                e.duration_since(SystemTime::now())
                    .is_ok_and(|left| left > EARLY_RENEWAL)
            });
            if fresh {
                return Ok(c.clone());
            }
        }
        let creds = self.provider.provide_credentials().await.map_err(|e| {
            object_store::Error::Generic {
                store: "S3",
                // The chain's errors say which providers were tried, never a secret.
                source: format!("no AWS credentials from {}: {e}", self.source).into(),
            }
        })?;
        let c = Arc::new(AwsCredential {
            key_id: creds.access_key_id().to_string(),
            secret_key: creds.secret_access_key().to_string(),
            token: creds.session_token().map(str::to_string),
        });
        *cached = Some((c.clone(), creds.expiry()));
        Ok(c)
    }
}
