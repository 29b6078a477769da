//! `/api/videos`: recordings uploaded to be checked ([`crate::videos`]).
//!
//! * `POST /api/videos?station=ID&name=NAME` with the file as the body (any content type):
//!   202 with the upload's state and `Location: /api/videos/{id}`; the check runs in the
//!   background, one at a time. 413 over `http.max_video_mb`, 415 for a file that is no
//!   video container a check plays, 400 for an unknown station, 503 (with `Retry-After`)
//!   while [`MAX_QUEUED`](crate::videos::MAX_QUEUED) wait already;
//! * `GET /api/videos/{id}`: its state, progress (`video_s`, `orders_stored`) and, once
//!   done, the report (`check-video --json`'s object), or why it failed;
//! * `GET /api/videos`: the newest uploads, without their reports.
//!
//! The body is streamed to disk, never held in memory.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;

use super::openapi::ApiErrorBody;
use super::{ApiError, Shared};
use crate::videos::{Container, Job, Refused, Videos};

/// A client that sends no byte for this long is dropped; a large upload may take as long
/// as it needs otherwise.
const IDLE: Duration = Duration::from_secs(60);

/// The first bytes that tell the container.
const HEAD: usize = 376;

pub(super) fn router() -> Router<Shared> {
    Router::new()
        .route("/api/videos", get(list).post(upload).fallback(not_allowed))
        .route("/api/videos/{id}", get(one).fallback(not_allowed))
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http())
                // The body is streamed and counted against max_video_mb (and timed) here.
                .layer(DefaultBodyLimit::disable()),
        )
}

async fn not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "/api/videos supports GET and POST, /api/videos/{id} GET",
    )
}

fn service(state: &Shared) -> Result<Arc<Videos>, ApiError> {
    state.videos.clone().ok_or_else(|| {
        ApiError::not_found(
            "recordings are not checked by this process (http.max_video_mb = 0, or no \
             AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the check's own S3 server)",
        )
    })
}

#[derive(Deserialize)]
pub(super) struct UploadQuery {
    station: Option<String>,
    name: Option<String>,
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the recording is larger than http.max_video_mb = {} MiB: cut it (e.g. \
             `ffmpeg -i in.mp4 -t 600 -c copy out.mp4`) or raise the limit",
            max >> 20
        ),
    )
}

#[utoipa::path(post, path = "/api/videos", operation_id = "uploadVideo", tag = "videos",
    params(
        ("station" = Option<String>, Query, description = "The station whose settings (roi, idle timeout) are used; default: the first"),
        ("name" = Option<String>, Query, description = "A name for people, e.g. the file's")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The recording: Matroska/WebM, MP4/QuickTime, MPEG-TS, AVI or raw H.264"),
    responses(
        (status = 202, description = "Stored and queued; Location names it", body = Job),
        (status = 400, description = "Unknown station", body = ApiErrorBody),
        (status = 413, description = "Larger than http.max_video_mb", body = ApiErrorBody),
        (status = 415, description = "Not a video container a check plays", body = ApiErrorBody),
        (status = 503, description = "Too many checks waiting; Retry-After says when to try again", body = ApiErrorBody)))]
pub(super) async fn upload(
    State(state): State<Shared>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let svc = service(&state)?;
    let max = svc.max_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    let (id, slot) = match svc.admit(q.station.as_deref()) {
        Ok(admitted) => admitted,
        Err(Refused::UnknownStation(m)) => {
            return Err(ApiError::bad_request(format!("station: {m}")));
        }
        Err(Refused::Busy) => {
            let mut res = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} recordings are waiting for their check already: try again later",
                    crate::videos::MAX_QUEUED
                ),
            )
            .into_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
            return Ok(res);
        }
    };
    let (path, bytes) = receive(&svc, &id, body, max).await?;
    let job = svc.queue(slot, id.clone(), path, q.station, q.name, bytes);
    let mut res = super::json(StatusCode::ACCEPTED, &job);
    if let Ok(v) = format!("/api/videos/{id}").parse() {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// An upload's file, removed when dropped unless kept: a refusal, a client gone, a
/// shutdown or a dropped request leave nothing behind.
struct Partial(Option<std::path::PathBuf>);

impl Partial {
    fn keep(mut self) -> std::path::PathBuf {
        self.0.take().expect("kept once")
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Writes the body to the upload folder, checking its first bytes and its size as they
/// come; a client silent for [`IDLE`] is dropped (408).
async fn receive(
    svc: &Videos,
    id: &str,
    body: Body,
    max: u64,
) -> Result<(std::path::PathBuf, u64), ApiError> {
    let failed = |e: std::io::Error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot store the upload: {e}"),
        )
    };
    tokio::fs::create_dir_all(svc.upload_dir())
        .await
        .map_err(failed)?;
    let mut stopping = svc.stopping.clone();
    let mut stream = body.into_data_stream();
    let mut head = Vec::with_capacity(HEAD);
    let mut file: Option<(tokio::fs::File, Partial)> = None;
    let mut total = 0u64;
    loop {
        let next = tokio::select! {
            n = tokio::time::timeout(IDLE, stream.next()) => n,
            _ = stopping.wait() => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the orchestrator is stopping: send the recording again later",
                ));
            }
        };
        let chunk = match next {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("no byte of the upload for {} s", IDLE.as_secs()),
                ));
            }
            Ok(Some(Ok(c))) => Some(c),
            Ok(Some(Err(e))) => {
                return Err(ApiError::bad_request(format!(
                    "the upload was cut short: {e}"
                )));
            }
            Ok(None) => None,
        };
        if let Some(c) = &chunk {
            total += c.len() as u64;
            if total > max {
                return Err(too_large(max));
            }
        }
        match (&mut file, chunk) {
            (Some((f, _)), Some(c)) => f.write_all(&c).await.map_err(failed)?,
            (Some(_), None) => break,
            (None, chunk) => {
                let end = chunk.is_none();
                if let Some(c) = chunk {
                    head.extend_from_slice(&c);
                }
                if head.len() < HEAD && !end {
                    continue;
                }
                if head.is_empty() {
                    return Err(ApiError::bad_request(
                        "empty body: send the recording as the request body",
                    ));
                }
                let Some(container) = Container::sniff(&head) else {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!(
                            "not a video container a check plays: expected {}",
                            Container::KNOWN
                        ),
                    ));
                };
                let path = svc.upload_path(id, container);
                let f = tokio::fs::File::create(&path).await.map_err(failed)?;
                let (f, _) = file.insert((f, Partial(Some(path))));
                f.write_all(&head).await.map_err(failed)?;
                if end {
                    break;
                }
            }
        }
    }
    let (mut f, partial) = file.expect("a file exists once the head was read");
    f.flush().await.map_err(failed)?;
    Ok((partial.keep(), total))
}

#[utoipa::path(get, path = "/api/videos/{id}", operation_id = "getVideo", tag = "videos",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "Its state, progress and, when done, the report", body = Job),
        (status = 404, description = "Not known (only the newest 32 are kept)", body = ApiErrorBody)))]
pub(super) async fn one(
    State(state): State<Shared>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = path?;
    let svc = service(&state)?;
    match svc.get(&id) {
        Some(job) => Ok(super::json(StatusCode::OK, &job)),
        None => Err(ApiError::not_found(format!(
            "no upload {id:?} (only the newest {} are kept)",
            crate::videos::KEEP_JOBS
        ))),
    }
}

#[utoipa::path(get, path = "/api/videos", operation_id = "listVideos", tag = "videos",
    responses((status = 200, description = "The newest uploads first, without their reports", body = Vec<Job>)))]
pub(super) async fn list(State(state): State<Shared>) -> Result<Response, ApiError> {
    let svc = service(&state)?;
    Ok(super::json(StatusCode::OK, &svc.list()).into_response())
}
