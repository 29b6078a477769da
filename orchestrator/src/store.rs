//! The bucket as the orchestrator uses it: aws-sdk-s3 with the standard credential chain
//! (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, ...) plus the configured
//! endpoint and path-style addressing (MinIO, Ceph, the test server).

use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

/// Where things live in the bucket(s).
#[derive(Debug, Clone)]
pub struct Layout {
    /// Bucket holding frames and markers.
    pub bucket: String,
    /// Key prefix of frames and markers (empty or ending in `/`).
    pub prefix: String,
    /// Bucket holding results and claims.
    pub results_bucket: String,
    /// Key prefix of `results/` and `claims/` (empty or ending in `/`).
    pub results_prefix: String,
}

impl Layout {
    /// `results/{station}/{order}.json` under the results prefix.
    pub fn result_key(&self, station: &str, order: &str) -> Result<String, StoreError> {
        oa_contract::result_key(&self.results_prefix, station, order)
            .map_err(|e| StoreError(format!("result of {station}/{order}: {e}")))
    }

    /// The claim on computing result `revision` of an order ([`oa_contract::claim_key`]).
    pub fn claim_key(
        &self,
        station: &str,
        order: &str,
        revision: u32,
    ) -> Result<String, StoreError> {
        oa_contract::claim_key(&self.results_prefix, station, order, revision)
            .map_err(|e| StoreError(format!("claim on {station}/{order}: {e}")))
    }
}

/// TCP (and TLS) connection set-up to the store.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// One attempt of one request, reply body included (frames are ~100 KB).
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// One request with all its retries.
pub const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A storage failure, with the operation and key in the message.
#[derive(Debug, Clone)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &str,
    key: &str,
    e: &SdkError<E, HttpResponse>,
) -> StoreError {
    let detail = match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            format!(
                "{}: {}",
                err.code().unwrap_or("service error"),
                err.message().unwrap_or("")
            )
        }
        other => {
            let mut msg = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            msg
        }
    };
    StoreError(format!("{op} {key}: {detail}"))
}

fn http_status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// An object and when it was stored.
pub struct Object {
    pub body: Vec<u8>,
    pub last_modified_ms: Option<i64>,
}

/// One listed key.
pub struct Listed {
    pub key: String,
    pub last_modified_ms: Option<i64>,
    pub size: u64,
}

#[derive(Clone)]
pub struct Store {
    client: Client,
}

impl Store {
    /// A client from the standard AWS environment chain, with `endpoint` (None for AWS).
    pub async fn connect(endpoint: Option<&str>, region: &str, force_path_style: bool) -> Store {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .load()
            .await;
        // Without timeouts a store that accepts connections and never answers would
        // freeze discovery for every station, and /readyz with it.
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(ATTEMPT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(force_path_style)
            .timeout_config(timeouts);
        if let Some(ep) = endpoint.filter(|e| !e.is_empty()) {
            conf = conf.endpoint_url(ep);
        }
        Store {
            client: Client::from_conf(conf.build()),
        }
    }

    /// `None` when the object does not exist.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<Object>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let last_modified_ms = out.last_modified().and_then(|d| d.to_millis().ok());
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| StoreError(format!("GET {key}: reading body: {e}")))?
                    .into_bytes()
                    .to_vec();
                Ok(Some(Object {
                    body,
                    last_modified_ms,
                }))
            }
            Err(e) if http_status(&e) == Some(404) => Ok(None),
            Err(e) => Err(describe("GET", key, &e)),
        }
    }

    pub async fn exists(&self, bucket: &str, key: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if http_status(&e) == Some(404) => Ok(false),
            Err(e) => Err(describe("HEAD", key, &e)),
        }
    }

    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| describe("PUT", key, &e))
    }

    /// Writes `manifest` as its order's `__EOS__` marker under `prefix`, after its
    /// station index entry (stamped with the wall clock), as the sink does.
    pub async fn put_marker(
        &self,
        bucket: &str,
        prefix: &str,
        manifest: &oa_contract::Manifest,
    ) -> Result<(), StoreError> {
        let (station, order) = (&manifest.station_id, &manifest.order_id);
        let key = oa_contract::marker_key(prefix, station, order)
            .map_err(|e| StoreError(e.to_string()))?;
        let entry = oa_contract::IndexEntry {
            station: station.clone(),
            order: order.clone(),
            kind: oa_contract::IndexKind::Marker,
            unix_ms: crate::consume::now_ms().max(0) as u64,
        };
        let entry_key = oa_contract::index_key(prefix, station, order, entry.kind, entry.unix_ms)
            .map_err(|e| StoreError(e.to_string()))?;
        self.put(
            bucket,
            &entry_key,
            entry.to_json().into_bytes(),
            "application/json",
        )
        .await?;
        self.put(bucket, &key, manifest.to_json(), "application/json")
            .await
    }

    /// Removes `key` (absent is fine).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| describe("DELETE", key, &e))
    }

    /// Deletes `keys` (at most 1000) with one DeleteObjects request; absent keys count as
    /// deleted. `Err` when the request itself failed; otherwise the keys the store
    /// refused, each with its error (deleted are all the others).
    pub async fn delete_many(
        &self,
        bucket: &str,
        keys: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError(format!("DeleteObjects {}: {e}", keys[0])))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| StoreError(format!("DeleteObjects {}: {e}", keys[0])))?;
        let what = format!("{} ({} keys)", keys[0], keys.len());
        let out = self
            .client
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| describe("DeleteObjects", &what, &e))?;
        Ok(out
            .errors()
            .iter()
            .map(|e| {
                (
                    e.key().unwrap_or_default().to_owned(),
                    format!(
                        "{}: {}",
                        e.code().unwrap_or("error"),
                        e.message().unwrap_or("")
                    ),
                )
            })
            .collect())
    }

    /// Creates `key` only if it does not exist (`If-None-Match: *`); `false` when it did.
    pub async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Result<bool, StoreError> {
        match self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if matches!(http_status(&e), Some(412) | Some(409)) => Ok(false),
            Err(e) => Err(describe("conditional PUT", key, &e)),
        }
    }

    /// One page (up to `max_keys`) of keys under `prefix` after `start_after`;
    /// the flag tells whether more keys follow.
    pub async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: i32,
    ) -> Result<(Vec<Listed>, bool), StoreError> {
        let mut req = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(max_keys);
        if let Some(s) = start_after {
            req = req.start_after(s);
        }
        let out = req.send().await.map_err(|e| describe("LIST", prefix, &e))?;
        let keys = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(Listed {
                    key: o.key()?.to_owned(),
                    last_modified_ms: o.last_modified().and_then(|d| d.to_millis().ok()),
                    size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                })
            })
            .collect();
        Ok((keys, out.is_truncated().unwrap_or(false)))
    }
}
