//! The API's routes, in one table: the emulated API Gateway (`local`) matches requests against it to give each event
//! its `routeKey` and `pathParameters`, the handlers dispatch on it, the local server and the tests send each route to
//! the function that serves it in the deployment, and `deploy/test_rules.py` checks template.yaml's routes against it.
//! Adding a route is one row in [`ROUTES`] (and its operation in `handlers`).

use std::collections::HashMap;

use crate::app::Function;
use crate::handlers::Route;

/// A route: method, path template (as in template.yaml, `{name}` a path parameter), what it does, and which function
/// serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub method: &'static str,
    pub path: &'static str,
    pub route: Route,
    pub function: Function,
}

impl Row {
    const fn new(method: &'static str, path: &'static str, route: Route, function: Function) -> Self {
        Row { method, path, route, function }
    }

    /// API Gateway's route key: `METHOD /path/{param}`.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Every route. deploy/test_rules.py reads the rows from this file: keep each on one line, in this form.
pub const ROUTES: &[Row] = &[
    Row::new("POST", "/upload", Route::Chunk, Function::Chunk),
    Row::new("GET", "/upload", Route::List, Function::Chunk),
    Row::new("POST", "/upload/complete", Route::Complete, Function::Complete),
    Row::new("POST", "/upload/create", Route::Open, Function::Chunk),
    Row::new("POST", "/upload/{upload_id}/parts", Route::Parts, Function::Chunk),
    Row::new("GET", "/upload/{upload_id}", Route::Status, Function::Chunk),
    Row::new("DELETE", "/upload/{upload_id}", Route::Abort, Function::Chunk),
    Row::new("POST", "/files", Route::Tus, Function::Tus),
    Row::new("OPTIONS", "/files", Route::Tus, Function::Tus),
    Row::new("HEAD", "/files/{upload_id}", Route::Tus, Function::Tus),
    Row::new("PATCH", "/files/{upload_id}", Route::Tus, Function::Tus),
    Row::new("DELETE", "/files/{upload_id}", Route::Tus, Function::Tus),
    Row::new("POST", "/files/{upload_id}", Route::Tus, Function::Tus),
    Row::new("OPTIONS", "/files/{upload_id}", Route::Tus, Function::Tus),
];

/// A request matched to its route, with the path parameters the route's template names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub row: Row,
    pub parameters: HashMap<String, String>,
}

/// The route API Gateway (HTTP API) selects for a request, as its documentation says ("Routing API requests"): of the
/// routes whose method and path match, the most specific one, segment by segment (a literal segment before a path
/// variable). `None`: no route matches, and API Gateway answers 404 itself.
pub fn select(method: &str, path: &str) -> Option<Matched> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    ROUTES
        .iter()
        .filter(|row| row.method == method)
        .filter_map(|row| {
            let template: Vec<&str> = row.path.trim_start_matches('/').split('/').collect();
            if template.len() != segments.len() {
                return None;
            }
            let mut parameters = HashMap::new();
            let mut literal = Vec::with_capacity(segments.len());
            for (part, segment) in template.iter().zip(&segments) {
                match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) if !segment.is_empty() => {
                        parameters.insert(name.to_string(), percent_decode(segment));
                        literal.push(false);
                    }
                    Some(_) => return None,
                    None if part == segment => literal.push(true),
                    None => return None,
                }
            }
            Some((literal, Matched { row: *row, parameters }))
        })
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, matched)| matched)
}

/// The row of a route key (`POST /upload`), or of a REST API's method and resource path.
pub fn by_key(method: &str, path: &str) -> Option<Row> {
    ROUTES.iter().find(|row| row.method == method && row.path == path).copied()
}

/// API Gateway hands path parameters to the function decoded.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_and_id(method: &str, path: &str) -> Option<(String, Option<String>)> {
        select(method, path).map(|m| (m.row.key(), m.parameters.get("upload_id").cloned()))
    }

    #[test]
    fn literal_segments_win_over_path_variables() {
        assert_eq!(key_and_id("POST", "/upload/complete"), Some(("POST /upload/complete".into(), None)));
        assert_eq!(key_and_id("POST", "/upload/create"), Some(("POST /upload/create".into(), None)));
        // No GET route for /upload/complete: the path variable takes it, as on API Gateway.
        assert_eq!(
            key_and_id("GET", "/upload/complete"),
            Some(("GET /upload/{upload_id}".into(), Some("complete".into())))
        );
        assert_eq!(
            key_and_id("POST", "/upload/ab12/parts"),
            Some(("POST /upload/{upload_id}/parts".into(), Some("ab12".into())))
        );
        assert_eq!(
            key_and_id("DELETE", "/upload/a%62c"),
            Some(("DELETE /upload/{upload_id}".into(), Some("abc".into())))
        );
    }

    #[test]
    fn what_no_route_serves_is_not_matched() {
        assert_eq!(select("PUT", "/upload"), None);
        assert_eq!(select("GET", "/"), None);
        assert_eq!(select("GET", "/upload/"), None);
        assert_eq!(select("GET", "/upload/a/b"), None);
        assert_eq!(select("POST", "upload"), None);
    }

    #[test]
    fn route_keys_name_their_rows() {
        for row in ROUTES {
            assert_eq!(by_key(row.method, row.path), Some(*row));
            assert_eq!(ROUTES.iter().filter(|r| r.key() == row.key()).count(), 1, "{} twice", row.key());
        }
    }
}
