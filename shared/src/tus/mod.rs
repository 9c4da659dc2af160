//! tus 1.0.0 (<https://tus.io/protocols/resumable-upload>) at `/files`: creation at `POST /files`, each upload at
//! `/files/{id}`, with the creation, creation-with-upload, creation-defer-length, expiration, checksum, termination
//! and concatenation extensions.
//!
//! The protocol's side only, in tusd's shape: headers in, headers out, one file per concern. The uploads are the
//! service's own (`upload::tus`, `upload::concat`): the sequential mode's records and commits, owners and anonymous
//! secrets, limits, expiry, cleanup, listing, events and completion hook, reached through `App`'s operations.

mod answer;
mod checksum;
mod concatenation;
mod creation;
mod discovery;
mod expiry;
mod headers;
pub mod metadata;
mod offset;
mod patch;
mod termination;

use bytes::Bytes;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

use self::answer::{Answer, TusError};
use crate::app::App;
use crate::error::ApiError;
use crate::handlers::{self, Late};
use crate::metrics::Metric;
use crate::protocol::UploadId;
use crate::request;
use crate::secret::{Caller, Network, UploadSecret};

/// What a tus request addresses.
enum Target {
    /// `/files`; the creation's `Location` is relative to it, so it works behind any stage or custom domain.
    Collection { trailing_slash: bool },
    /// `/files/{id}`, the id as the path gives it.
    Upload(String),
}

fn target(req: &Request) -> Option<Target> {
    let path = req.uri().path();
    let mut segments = path.trim_end_matches('/').rsplit('/');
    match (segments.next(), segments.next()) {
        (Some("files"), _) => Some(Target::Collection { trailing_slash: path.ends_with('/') }),
        (Some(id), Some("files")) => Some(Target::Upload(id.to_string())),
        _ => None,
    }
}

/// Whether a request is for tus (a path that ends `/files` or `/files/{id}`, after any stage).
pub fn serves(req: &Request) -> bool {
    target(req).is_some()
}

/// What a request does, for the log and the metrics.
#[derive(Clone, Copy)]
enum Route {
    Options,
    Create,
    Head,
    Patch,
    Delete,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Options => "tus-options",
            Route::Create => "tus-create",
            Route::Head => "tus-head",
            Route::Patch => "tus-patch",
            Route::Delete => "tus-delete",
        }
    }
}

/// Answers a tus request.
pub async fn serve(app: &App, req: Request) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    let principal = request::principal(&req);
    let logged = principal.as_ref().ok().cloned().flatten();
    // Boxed: the operations' futures nest deeply enough to exceed the compiler's layout depth in the binaries.
    let (route, upload_id, result) = Box::pin(respond(app, req, principal)).await;
    let answer = result.unwrap_or_else(|e| e.answer());
    let status = answer.status().as_u16();
    let route = route.map_or("tus", Route::name);
    if status >= 400 {
        app.metrics.emit(Metric::Refused { route, status });
    }
    tracing::info!(
        route,
        upload_id = upload_id.as_ref().map(UploadId::as_str),
        principal = logged.as_deref(),
        status,
        detail = answer.detail(),
        "request"
    );
    let answer = if head { answer.header("cache-control", "no-store") } else { answer };
    answer.into_response(head)
}

type Outcome = (Option<Route>, Option<UploadId>, Result<Answer, TusError>);

async fn respond(app: &App, req: Request, principal: Result<Option<String>, ApiError>) -> Outcome {
    let Some(target) = target(&req) else { return (None, None, Err(ApiError::NotFound.into())) };
    let method = match headers::method(&req) {
        Ok(method) => method,
        Err(e) => return (None, None, Err(e)),
    };
    let route = match (&target, &method) {
        (_, &Method::OPTIONS) => Route::Options,
        (Target::Collection { .. }, &Method::POST) => Route::Create,
        (Target::Upload(_), &Method::HEAD) => Route::Head,
        (Target::Upload(_), &Method::PATCH) => Route::Patch,
        (Target::Upload(_), &Method::DELETE) => Route::Delete,
        (Target::Collection { .. }, _) => {
            return (None, None, Err(ApiError::MethodNotAllowed { allow: "POST, OPTIONS".into() }.into()));
        }
        (Target::Upload(_), _) => {
            return (
                None,
                None,
                Err(ApiError::MethodNotAllowed { allow: "HEAD, PATCH, DELETE, OPTIONS".into() }.into()),
            );
        }
    };
    // Discovery needs no identity, and the spec has clients send no version with it; at an upload's URL, the URL
    // must be one (a 404 otherwise, as for every other method).
    if let Route::Options = route {
        if let Target::Upload(id) = &target
            && let Err(e) = UploadId::parse(id)
        {
            return (Some(route), None, Err(e.into()));
        }
        return (Some(route), None, Ok(discovery::answer(app)));
    }
    let checked = headers::check_version(&req, &method)
        .and_then(|()| principal.and_then(|p| handlers::authenticated(app, p.as_deref())).map_err(TusError::from))
        .and_then(|principal| Ok((principal, request::upload_secret(&req)?)));
    let (principal, secret) = match checked {
        Ok(checked) => checked,
        Err(e) => return (Some(route), None, Err(e)),
    };
    let deadline = handlers::deadline(app, &req);
    let context = Context { app, principal, secret, network: request::network(&req), deadline };
    match target {
        Target::Collection { trailing_slash } => {
            let (upload_id, result) = Box::pin(creation::create(&context, req, trailing_slash)).await;
            (Some(route), upload_id, result)
        }
        Target::Upload(id) => {
            let upload_id = match UploadId::parse(&id) {
                Ok(id) => id,
                Err(e) => return (Some(route), None, Err(e.into())),
            };
            let result = match route {
                Route::Head => Box::pin(offset::head(&context, &upload_id)).await,
                Route::Patch => Box::pin(patch::patch(&context, req, &upload_id)).await,
                _ => Box::pin(termination::delete(&context, &upload_id)).await,
            };
            (Some(route), Some(upload_id), result)
        }
    }
}

/// What every request's handler gets: the service, who asks, and by when the answer is due.
struct Context<'a> {
    app: &'a App,
    principal: Option<String>,
    /// `X-Upload-Secret`, for an anonymous caller.
    secret: Option<UploadSecret>,
    /// Where an anonymous caller calls from: what the uploads it creates count against.
    network: Option<Network>,
    deadline: tokio::time::Instant,
}

impl Context<'_> {
    /// The caller of a request that names an upload: an anonymous one must send the upload's secret.
    fn caller(&self) -> Result<Caller, TusError> {
        Ok(Caller::naming(self.principal.clone(), self.secret.clone())?)
    }

    /// Runs an operation by the request's deadline. Boxed: the operations' futures are large, and nesting them in
    /// the protocol's makes deep stack frames (in a debug build, enough to overflow a thread's 2 MiB).
    async fn by<T>(&self, late: Late, operation: impl Future<Output = Result<T, ApiError>>) -> Result<T, TusError> {
        Ok(handlers::by(self.deadline, late, Box::pin(operation)).await?)
    }

    /// A body's bytes, no more than a request through API Gateway and Lambda can carry: tus cannot announce a chunk
    /// size, so a client sending more learns the setting to change here (over Lambda's payload API Gateway refuses it
    /// before the function runs; docs/tus.md).
    fn body(&self, req: Request) -> Result<Bytes, TusError> {
        let body = request::body_bytes(req.into_body());
        let max = self.app.config.max_chunk_bytes;
        if body.len() as u64 > max {
            return Err(ApiError::PayloadTooLarge(format!(
                "a request may carry at most {max} bytes (API Gateway and Lambda's payload limits): set the tus \
                 client's chunkSize to 4 MiB (4194304) or less"
            ))
            .into());
        }
        Ok(body)
    }
}
