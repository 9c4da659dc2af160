//! Logs: one JSON line per request with the route, upload id, principal and outcome, and never a chunk's bytes or a
//! token.

use std::io::Write;
use std::sync::{Arc, Mutex};

use integration_tests::{Encoding, Service, User, data, md5_hex};

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn requests_are_logged_as_json_without_bytes_or_tokens() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().json().with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let svc = Service::default().await;
    let user = User::named("log-watcher");
    // Printable bytes, so that a log holding the chunk would show it.
    let file: Vec<u8> = data(3000, 70).iter().map(|b| b'a' + b % 26).collect();
    let id = svc.upload_all(&user, &file, 1000, Encoding::Multipart).await;
    svc.complete(&user, &id, &md5_hex(b"wrong")).await.assert_status(400);
    svc.complete(&user, &id, &md5_hex(&file)).await.assert_status(200);

    let text = String::from_utf8(captured.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
        .expect("UTF-8 logs");
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("every log line is JSON")).collect();
    let requests: Vec<&serde_json::Value> =
        lines.iter().map(|l| &l["fields"]).filter(|f| f["message"] == "request").collect();
    assert_eq!(requests.len(), 5, "{text}");
    for fields in &requests {
        assert_eq!(fields["upload_id"], id.as_str(), "{fields}");
        assert_eq!(fields["principal"], "log-watcher", "{fields}");
        assert!(fields["status"].is_u64() && fields["route"].is_string(), "{fields}");
    }
    assert_eq!(requests[3]["status"], 400);
    assert_eq!(requests[3]["detail"], "md5 checksum does not match");
    let token = user.token.as_deref().expect("token");
    assert!(!text.contains(token), "a token was logged");
    assert!(!text.contains(&String::from_utf8_lossy(&file[..40]).to_string()), "chunk bytes were logged");
}
