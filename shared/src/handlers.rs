//! HTTP entry points: plain async functions of a `lambda_http::Request`, shared by the Lambda functions, the local
//! API server and the tests.

use std::future::Future;
use std::time::Duration;

use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;
use tokio::time::Instant;

use crate::app::{App, Function};
use crate::clock::now_ms;
use crate::error::{ApiError, json_response};
use crate::metrics::Metric;
use crate::protocol::UploadId;
use crate::request;
use crate::routes::{self, Row};
use crate::secret::{self, Caller, Network};
use crate::upload::Declared;

/// Lambda stops an invocation at its deadline: the answer must be out before, with this to spare for sending it.
const LAMBDA_DEADLINE_MARGIN: Duration = Duration::from_secs(1);

/// What a route does (`routes::ROUTES` says which method and path, and which function serves it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /upload`
    Chunk,
    /// `POST /upload/complete`
    Complete,
    /// `GET /upload/{upload_id}`
    Status,
    /// `DELETE /upload/{upload_id}`
    Abort,
    /// `POST /upload/create`: opens a parallel or direct upload.
    Open,
    /// `POST /upload/{upload_id}/parts`: a direct upload's part URLs.
    Parts,
    /// `GET /upload`: the caller's uploads.
    List,
    /// `/files` and `/files/{upload_id}`: tus, on the tus function, in that protocol's own way (`crate::tus`).
    Tus,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Chunk => "chunk",
            Route::Complete => "complete",
            Route::Status => "status",
            Route::Abort => "abort",
            Route::Open => "open",
            Route::Parts => "parts",
            Route::List => "list",
            Route::Tus => "tus",
        }
    }
}

/// The route of a request, and the upload id its path names: from the event API Gateway made, its route key (HTTP
/// API) or resource (REST API) and its path parameters. An event from a route the table does not name (a `$default`
/// route, a REST API's `{proxy+}` resource) is matched by its path, from its end: the path may carry a stage prefix.
pub fn route_of(req: &Request) -> Result<(Row, Option<String>), ApiError> {
    let method = req.method().as_str();
    let declared = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            ctx.route_key.as_deref().and_then(|key| key.split_once(' ')).and_then(|(m, path)| routes::by_key(m, path))
        }
        Some(RequestContext::ApiGatewayV1(ctx)) => {
            ctx.resource_path.as_deref().and_then(|path| routes::by_key(method, path))
        }
        _ => None,
    };
    if let Some(row) = declared {
        let id = req.path_parameters_ref().and_then(|p| p.first("upload_id")).map(str::to_string);
        return Ok((row, id));
    }
    let path = req.uri().path();
    let tails = path.match_indices('/').map(|(at, _)| &path[at..]);
    let mut allowed: Vec<&str> = Vec::new();
    for tail in tails {
        if let Some(matched) = routes::select(method, tail) {
            return Ok((matched.row, matched.parameters.get("upload_id").cloned()));
        }
        allowed.extend(routes::ROUTES.iter().filter(|r| routes::select(r.method, tail).is_some()).map(|r| r.method));
    }
    if allowed.is_empty() {
        return Err(ApiError::NotFound);
    }
    allowed.sort_unstable();
    allowed.dedup();
    Err(ApiError::MethodNotAllowed { allow: allowed.join(", ") })
}

/// Every route, each on its function's app as deployed: what the local API server and the tests serve.
pub async fn handle(chunk: &App, complete: &App, tus: &App, req: Request) -> Response<Body> {
    match route_of(&req).map(|(row, _)| row.function) {
        Ok(Function::Complete) => complete_function(complete, req).await,
        Ok(Function::Tus) => tus_function(tus, req).await,
        _ => chunk_function(chunk, req).await,
    }
}

/// The chunk function: chunks, status, abort, the listing, and opening and presigning parallel and direct uploads.
pub async fn chunk_function(app: &App, req: Request) -> Response<Body> {
    serve(app, req, Function::Chunk).await
}

/// The tus function: `/files` and `/files/{id}`, every method.
pub async fn tus_function(app: &App, req: Request) -> Response<Body> {
    crate::tus::serve(app, req).await
}

/// The complete function.
pub async fn complete_function(app: &App, req: Request) -> Response<Body> {
    serve(app, req, Function::Complete).await
}

async fn serve(app: &App, req: Request, function: Function) -> Response<Body> {
    let principal = request::principal(&req);
    let network = request::network(&req);
    let logged = principal.as_ref().ok().cloned().flatten();
    let (route, path_id) = match route_of(&req) {
        Ok((row, id)) if row.function == function => (row.route, id),
        Ok(_) => return unrouted(app, ApiError::NotFound),
        Err(e) => return unrouted(app, e),
    };
    let deadline = deadline(app, &req);
    let (upload_id, result) = match principal.and_then(|p| authenticated(app, p.as_deref())) {
        // Boxed: the operations' futures nest deeply enough to exceed the compiler's layout depth in the binaries.
        Ok(principal) => Box::pin(dispatch(app, req, route, (principal, network), path_id, deadline)).await,
        Err(e) => (path_id.and_then(|id| UploadId::parse(&id).ok()), Err(e)),
    };
    let response = match &result {
        Ok(body) => with_secret_header(json_response(StatusCode::OK, body), body),
        Err(e) => e.to_response(),
    };
    let status = response.status().as_u16();
    if status >= 400 {
        app.metrics.emit(Metric::Refused { route: route.name(), status });
    }
    let body = result.unwrap_or_else(|e| e.body());
    let upload_id = body.get("upload_id").and_then(Value::as_str).or(upload_id.as_ref().map(UploadId::as_str));
    let offset = body.get("offset").and_then(Value::as_u64);
    let detail = body.get("detail").and_then(Value::as_str);
    tracing::info!(route = route.name(), upload_id, principal = logged.as_deref(), status, offset, detail, "request");
    response
}

/// The answer to a request no route of this function serves.
fn unrouted(app: &App, e: ApiError) -> Response<Body> {
    let response = e.to_response();
    app.metrics.emit(Metric::Refused { route: "none", status: response.status().as_u16() });
    response
}

/// The longest principal an upload can be bound to: it is stored in every upload's record, whose size is bounded
/// (`store::sizing`). Identity providers' `sub` claims are far shorter (Cognito's are 36 characters).
const MAX_PRINCIPAL_BYTES: usize = 128;

/// The principal, or `None` for an anonymous caller where the deployment allows them.
pub(crate) fn authenticated(app: &App, principal: Option<&str>) -> Result<Option<String>, ApiError> {
    match principal {
        Some(p) if p.len() > MAX_PRINCIPAL_BYTES => Err(ApiError::BadRequest(format!(
            "The caller's identity (the token's sub) is over {MAX_PRINCIPAL_BYTES} bytes"
        ))),
        Some(p) => Ok(Some(p.to_string())),
        None if app.config.require_auth => Err(ApiError::Unauthenticated),
        None => Ok(None),
    }
}

/// The answer that creates an anonymous upload carries its secret in a header too, for clients that read headers.
fn with_secret_header(mut response: Response<Body>, body: &Value) -> Response<Body> {
    if let Some(value) = body.get(secret::FIELD).and_then(Value::as_str).and_then(|s| HeaderValue::from_str(s).ok()) {
        response.headers_mut().insert(secret::HEADER, value);
    }
    response
}

/// When a request must be answered by: the request timeout from now, or sooner for the Lambda invocation's deadline.
pub(crate) fn deadline(app: &App, req: &Request) -> Instant {
    let lambda_deadline_ms = req.lambda_context_ref().map(|c| c.deadline);
    Instant::now() + time_left(app.config.request_timeout, lambda_deadline_ms, now_ms())
}

/// How long a request may run: the request timeout, or less when the Lambda invocation's own deadline (ms since the
/// epoch) comes first.
fn time_left(request_timeout: Duration, lambda_deadline_ms: Option<u64>, now_ms: u64) -> Duration {
    match lambda_deadline_ms {
        Some(deadline_ms) => {
            let lambda_left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
            request_timeout.min(lambda_left.saturating_sub(LAMBDA_DEADLINE_MARGIN))
        }
        None => request_timeout,
    }
}

/// What a request answers when its deadline passes before its operation ends. The operation is dropped wherever it
/// stands, which the commit discipline makes safe: bytes reach S3 before the write that references them.
#[derive(Clone, Copy)]
pub(crate) enum Late {
    /// The accepting write may have been sent (a later chunk's commit, a completion): 503 Ambiguous, ask the status.
    MayHaveLanded,
    /// Nothing the client could refer to was accepted: 503 Unavailable, send it again. Status and abort change
    /// nothing a repeat would not finish, and a first chunk's upload, if it was created, was never named to the
    /// client: a repeat starts another one, and the unnamed one expires.
    Retry,
}

/// Runs an operation until `deadline`, or answers as `late` says.
pub(crate) async fn by<T>(
    deadline: Instant,
    late: Late,
    operation: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout_at(deadline, operation).await.unwrap_or_else(|_| {
        let detail = "the request ran past its deadline".to_string();
        tracing::warn!(error = %detail, "storage too slow");
        Err(match late {
            Late::MayHaveLanded => ApiError::Ambiguous(detail),
            Late::Retry => ApiError::Unavailable(detail),
        })
    })
}

/// Runs a route by `deadline`; also returns the upload id the request named, for the log.
async fn dispatch(
    app: &App,
    req: Request,
    route: Route,
    (principal, network): (Option<String>, Option<Network>),
    path_id: Option<String>,
    deadline: Instant,
) -> (Option<UploadId>, Result<Value, ApiError>) {
    // The upload a status, abort or parts request names in its path: an id we could not have issued is unknown.
    let path_id = match path_id.as_deref().map(UploadId::parse).transpose() {
        Ok(id) => id,
        Err(e) => return (None, Err(e)),
    };
    match route {
        Route::Chunk => match request::chunk(req, &app.config.field_name).await {
            Ok((chunk, _)) if chunk.data.len() as u64 > app.config.max_chunk_bytes => (
                chunk.upload_id,
                Err(ApiError::PayloadTooLarge(format!("Chunks may be at most {} bytes", app.config.max_chunk_bytes))),
            ),
            Ok((chunk, secret)) => {
                let upload_id = chunk.upload_id.clone();
                let (caller, late) = match upload_id {
                    None => (Ok(Caller::creating(principal, network)), Late::Retry),
                    Some(_) => (Caller::naming(principal, secret), Late::MayHaveLanded),
                };
                let result = match caller {
                    Ok(caller) => by(deadline, late, app.accept_chunk(&caller, chunk)).await,
                    Err(e) => Err(e),
                };
                (upload_id, result)
            }
            Err(e) => (None, Err(e)),
        },
        Route::Complete => match request::complete(req).await {
            Ok(fields) => {
                let result = match Caller::naming(principal, fields.secret) {
                    Ok(caller) => {
                        let declared = Declared { md5: fields.md5.as_deref(), crc64: fields.crc64.as_deref() };
                        let completing = app.complete(&caller, &fields.upload_id, declared, deadline);
                        by(deadline, Late::MayHaveLanded, completing).await
                    }
                    Err(e) => Err(e),
                };
                (Some(fields.upload_id), result)
            }
            Err(e) => (None, Err(e)),
        },
        // Nothing is accepted by either: a first request's upload the client never learned of expires, and a part
        // declared again with the same CRC64NVME is the same declaration.
        Route::Open => match request::opening(req) {
            Ok(opening) => {
                (None, by(deadline, Late::Retry, app.open(&Caller::creating(principal, network), opening)).await)
            }
            Err(e) => (None, Err(e)),
        },
        Route::Parts => {
            let Some(id) = path_id else { return (None, Err(ApiError::NotFound)) };
            let result = match request::part_urls(req) {
                Ok(wanted) => match Caller::naming(principal, wanted.secret) {
                    Ok(caller) => by(deadline, Late::Retry, app.presign_parts(&caller, &id, wanted.parts)).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            (Some(id), result)
        }
        // Reads only. An anonymous caller is refused by the listing whatever secret it sent: none lists uploads.
        Route::List => match request::listing(&req) {
            Ok(listing) => {
                (None, by(deadline, Late::Retry, app.list(&Caller::creating(principal, None), listing)).await)
            }
            Err(e) => (None, Err(e)),
        },
        Route::Status | Route::Abort => {
            let Some(id) = path_id else { return (None, Err(ApiError::NotFound)) };
            let caller = match request::upload_secret(&req).and_then(|secret| Caller::naming(principal, secret)) {
                Ok(caller) => caller,
                Err(e) => return (Some(id), Err(e)),
            };
            let result = if route == Route::Status {
                by(deadline, Late::Retry, app.status(&caller, &id)).await
            } else {
                by(deadline, Late::Retry, app.abort(&caller, &id)).await
            };
            (Some(id), result)
        }
        // The tus function serves these (`handle`), in tus's own way: never this dispatch.
        Route::Tus => (path_id, Err(ApiError::NotFound)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `$default` route (or a REST API's `{proxy+}` resource) passes every request on: its path says the route,
    /// behind a stage prefix too, and its method may be one the path's routes do not have.
    #[test]
    fn a_route_no_event_names_is_matched_by_its_path() {
        let event = |method: &str, path: &str| {
            let json = format!(
                r#"{{"version":"2.0","routeKey":"$default","rawPath":"{path}","requestContext":{{"http":{{"method":"{method}"}}}}}}"#
            );
            crate::lambda::decode(serde_json::from_str(&json).unwrap()).unwrap()
        };
        let (row, id) = route_of(&event("GET", "/prod/upload/abc")).unwrap();
        assert_eq!((row.route, id.as_deref()), (Route::Status, Some("abc")));
        assert_eq!(route_of(&event("POST", "/upload/complete")).unwrap().0.route, Route::Complete);
        match route_of(&event("PUT", "/upload")) {
            Err(ApiError::MethodNotAllowed { allow }) => assert_eq!(allow, "GET, POST"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(route_of(&event("GET", "/nothing")), Err(ApiError::NotFound)));
    }

    #[test]
    fn the_earlier_deadline_wins() {
        let timeout = Duration::from_secs(25);
        assert_eq!(time_left(timeout, None, 1_000), timeout);
        // 29 s left in the invocation: the request timeout is earlier.
        assert_eq!(time_left(timeout, Some(30_000), 1_000), timeout);
        // A function timeout below the request timeout: Lambda's deadline less the margin.
        assert_eq!(time_left(timeout, Some(11_000), 1_000), Duration::from_secs(9));
        // Already past it: no time at all, rather than a wrap-around.
        assert_eq!(time_left(timeout, Some(500), 1_000), Duration::ZERO);
    }
}
