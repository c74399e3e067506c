//! [`S3Store`]: the [`ObjectStore`] on S3 or an S3-compatible server,
//! through `aws-sdk-s3`.
//!
//! Credentials are the configured pair when given, else the standard AWS
//! chain (environment, profile, web identity, instance metadata); they
//! never reach a log or an error text. Objects of at least
//! [`S3Options::multipart_threshold`] bytes go up in parts of
//! [`S3Options::part_size`] (multipart upload, aborted if a part fails).
//! Every operation has a time limit ([`S3Options::operation_timeout`]);
//! the SDK's own retries are kept to two attempts, since the spool retries
//! with backoff for as long as it takes.
//!
//! Errors: a timeout, a connection failure, a 5xx, 408 or 429 is
//! [`StoreError::Unavailable`] (try again); another 4xx (no such bucket,
//! access denied) is [`StoreError::Refused`].

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::store::{ObjectStore, StoreError, check_key};

/// The smallest part S3 takes (but the last).
pub const MIN_PART_SIZE: usize = 5 << 20;

/// How to reach the bucket.
#[derive(Clone)]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// Its region (`us-east-1` for most S3-compatible servers).
    pub region: String,
    /// An S3-compatible server's URL (`http://127.0.0.1:9000`); `None`
    /// for AWS.
    pub endpoint: Option<String>,
    /// Path-style addressing (`ENDPOINT/BUCKET/KEY`), which most
    /// S3-compatible servers need.
    pub path_style: bool,
    /// Access key id and secret access key; `None`: the standard AWS
    /// credential chain.
    pub credentials: Option<(String, String)>,
    /// Objects this large or larger are uploaded in parts.
    pub multipart_threshold: usize,
    /// Size of each part but the last; at least [`MIN_PART_SIZE`].
    pub part_size: usize,
    /// The most one operation may take, retries included.
    pub operation_timeout: Duration,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "[configured]"),
            )
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

impl S3Options {
    /// Defaults for `bucket` in `region`: AWS, the credential chain,
    /// multipart from 16 MiB in 8 MiB parts, 30 s per operation.
    pub fn new(bucket: impl Into<String>, region: impl Into<String>) -> Self {
        S3Options {
            bucket: bucket.into(),
            region: region.into(),
            endpoint: None,
            path_style: false,
            credentials: None,
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
            operation_timeout: Duration::from_secs(30),
        }
    }
}

/// An [`ObjectStore`] on one S3 bucket. Cheap to clone.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    multipart_threshold: usize,
    part_size: usize,
}

impl S3Store {
    /// A client for `options` (nothing is asked of the server yet).
    pub async fn new(options: S3Options) -> Result<S3Store, StoreError> {
        if options.part_size < MIN_PART_SIZE {
            return Err(StoreError::Refused(format!(
                "part size {} is below S3's minimum of {MIN_PART_SIZE}",
                options.part_size
            )));
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(options.region.clone()));
        if let Some((id, secret)) = &options.credentials {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "ferrocast-config",
            ));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(options.path_style)
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_timeout(options.operation_timeout)
                    .build(),
            );
        if let Some(endpoint) = &options.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(S3Store {
            client: Client::from_conf(config.build()),
            bucket: options.bucket,
            multipart_threshold: options.multipart_threshold,
            part_size: options.part_size,
        })
    }

    /// Creates the bucket (for tests and first set-ups; an existing bucket
    /// of ours is fine).
    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you()) =>
            {
                Ok(())
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn put_multipart(&self, key: String, body: Bytes) -> Result<(), StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(classify)?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| StoreError::Unavailable("multipart upload without an id".into()))?
            .to_owned();
        let uploaded = self.upload_parts(&key, &upload_id, &body).await;
        let parts = match uploaded {
            Ok(parts) => parts,
            Err(e) => {
                // Best effort: S3 keeps unfinished parts (and bills them)
                // until aborted; a lifecycle rule catches what this misses.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(e);
            }
        };
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        body: &Bytes,
    ) -> Result<Vec<CompletedPart>, StoreError> {
        let mut parts = Vec::new();
        let mut offset = 0;
        while offset < body.len() {
            let end = (offset + self.part_size).min(body.len());
            let number = i32::try_from(parts.len() + 1)
                .map_err(|_| StoreError::Refused("too many parts".into()))?;
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(body.slice(offset..end)))
                .send()
                .await
                .map_err(classify)?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .build(),
            );
            offset = end;
        }
        Ok(parts)
    }
}

/// What an SDK error means for the caller (module docs).
fn classify<E>(error: SdkError<E, HttpResponse>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let text = DisplayErrorContext(&error).to_string();
    match (&error, status) {
        (SdkError::ConstructionFailure(_), _) => StoreError::Refused(text),
        (_, Some(status)) if (400..500).contains(&status) && status != 408 && status != 429 => {
            StoreError::Refused(text)
        }
        _ => StoreError::Unavailable(text),
    }
}

/// What a listing collects: keys, or the "directories" of a
/// `/`-delimited listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    Keys,
    Dirs,
}

impl S3Store {
    /// Every page of a `ListObjectsV2` under `prefix`, sorted.
    async fn list_all(&self, prefix: &str, listing: Listing) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take());
            let request = match listing {
                Listing::Keys => request,
                Listing::Dirs => request.delimiter("/"),
            };
            let page = request.send().await.map_err(classify)?;
            match listing {
                Listing::Keys => found.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                ),
                Listing::Dirs => found.extend(
                    page.common_prefixes()
                        .iter()
                        .filter_map(|p| p.prefix().map(str::to_owned)),
                ),
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => {
                    token = Some(next.to_owned());
                }
                _ => break,
            }
        }
        found.sort();
        found.dedup();
        Ok(found)
    }
}

impl ObjectStore for S3Store {
    fn put(&self, key: &str, body: Bytes) -> BoxFuture<'static, Result<(), StoreError>> {
        let this = self.clone();
        let key = key.to_owned();
        async move {
            check_key(&key)?;
            if body.len() >= this.multipart_threshold {
                return this.put_multipart(key, body).await;
            }
            this.client
                .put_object()
                .bucket(&this.bucket)
                .key(&key)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(classify)?;
            Ok(())
        }
        .boxed()
    }

    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<Bytes>, StoreError>> {
        let this = self.clone();
        let key = key.to_owned();
        async move {
            let object = match this
                .client
                .get_object()
                .bucket(&this.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(object) => object,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    return Ok(None);
                }
                Err(e) => return Err(classify(e)),
            };
            let body = object
                .body
                .collect()
                .await
                .map_err(|e| StoreError::Unavailable(format!("reading {key}: {e}")))?;
            Ok(Some(body.into_bytes()))
        }
        .boxed()
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>> {
        let this = self.clone();
        let prefix = prefix.to_owned();
        async move { this.list_all(&prefix, Listing::Keys).await }.boxed()
    }

    fn list_dirs(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>> {
        let this = self.clone();
        let prefix = prefix.to_owned();
        async move { this.list_all(&prefix, Listing::Dirs).await }.boxed()
    }

    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let this = self.clone();
        let key = key.to_owned();
        async move {
            this.client
                .delete_object()
                .bucket(&this.bucket)
                .key(&key)
                .send()
                .await
                .map_err(classify)?;
            Ok(())
        }
        .boxed()
    }
}
