//! The local API server: the service's routes on 127.0.0.1, each request passed through an emulated API Gateway to
//! the very handlers the Lambda functions run. For development; see `shared::local` for what is emulated. It also
//! serves the demo page (`/`, `/demo/…`) and the browser client (`/client/…`), and answers CORS as the template's
//! HTTP API does. `CHUNKED_UPLOAD_COMPLETION_HOOK` may name a command (`cmd:...`) or a local URL (`http://...`) as
//! well as a Lambda function: hooks can be developed without deploying one.

mod site;

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use shared::app::Function;
use shared::local::{API_GATEWAY_BODY_LIMIT, dev_token, invoke};
use shared::{App, handlers, lambda};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> ExitCode {
    lambda::init_logging();
    lambda::reuse_large_allocations();
    let port: u16 = match std::env::var("PORT").map(|p| p.parse()) {
        Err(_) => 8080,
        Ok(Ok(port)) => port,
        Ok(Err(_)) => {
            eprintln!("invalid configuration: PORT must be a port number");
            return ExitCode::from(2);
        }
    };
    let site = match site::Site::from_env() {
        Ok(site) => Arc::new(site),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Each route runs on the app of the function that serves it when deployed, with that function's SDK clients.
    let apps = (
        App::from_env_as(Function::Chunk).await,
        App::from_env_as(Function::Complete).await,
        App::from_env_as(Function::Tus).await,
    );
    let app = match apps {
        (Ok(chunk), Ok(complete), Ok(tus)) => Arc::new(Apps { chunk, complete, tus }),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::from(1);
        }
    };
    print_banner(&app.chunk, port);
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        eprintln!("cannot install signal handlers");
        return ExitCode::from(1);
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (app, site) = (app.clone(), site.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| serve(app.clone(), site.clone(), req));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    eprintln!("local API server stopped");
    ExitCode::SUCCESS
}

/// The apps of the deployment's API functions.
struct Apps {
    chunk: App,
    complete: App,
    tus: App,
}

async fn serve(
    app: Arc<Apps>,
    site: Arc<site::Site>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let origin = req.headers().get("origin").cloned();
    let mut response = match site.answer(req.method(), req.uri().path(), req.headers()).await {
        Some(response) => response,
        None => call_api(app, req).await,
    };
    site.add_cors(origin.as_ref(), response.headers_mut());
    Ok(response)
}

async fn call_api(app: Arc<Apps>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    // One byte over API Gateway's limit is enough to know the request is too large.
    let body = match Limited::new(body, API_GATEWAY_BODY_LIMIT + 1).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return too_large(),
    };
    let request = Request::from_parts(parts, body);
    // A task of its own, so it runs to its end when the client goes away, as a Lambda invocation does: hyper drops a
    // connection's futures, which would leave a cut completion holding its lease until it runs out.
    let handled =
        tokio::spawn(
            async move { invoke(&|r| handlers::handle(&app.chunk, &app.complete, &app.tus, r), request).await },
        );
    match handled.await {
        Ok(response) => response.map(Full::new),
        Err(e) => {
            eprintln!("a request's handler failed: {e}");
            gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

fn too_large() -> Response<Full<Bytes>> {
    gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
}

/// An answer of API Gateway's own, in its shape.
fn gateway_error(status: StatusCode, message: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!(r#"{{"message":"{message}"}}"#))));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    response
}

fn print_banner(app: &App, port: u16) {
    let url = format!("http://127.0.0.1:{port}");
    let auth = if app.config.require_auth {
        format!(" -H 'Authorization: Bearer {}'", dev_token("local-dev"))
    } else {
        String::new()
    };
    println!("Chunked upload API on {url}   (demo page: {url}/)");
    println!("  bucket: {}   table: {}", app.config.bucket, app.config.table);
    if app.config.require_auth {
        println!("  auth: DEVELOPMENT ONLY, bearer tokens are decoded without verification");
    }
    if let Some(hook) = &app.config.completion_hook {
        let timeout = app.config.completion_hook_timeout.as_secs();
        println!("  completion hook (CHUNKED_UPLOAD_COMPLETION_HOOK): {hook}, within {timeout} s");
    }
    println!("Try it (one chunk of 12 bytes, then complete with its MD5):");
    println!(
        "  curl -s{auth} -H 'Content-Range: bytes 0-11/12' -F 'file=@-;filename=hello.txt' {url}/upload <<< 'hello world' \\"
    );
    println!("    | tee /dev/stderr | sed -E 's/.*\"upload_id\": ?\"([0-9a-f]+)\".*/\\1/' \\");
    println!(
        "    | xargs -I{{}} curl -s{auth} -d upload_id={{}} -d md5=$(echo 'hello world' | md5sum | cut -c1-32) {url}/upload/complete"
    );
}
