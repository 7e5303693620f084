//! A minimal HTTP/1.1 server on hyper alone, for the node sidecars
//! (node-driver-registrar, livenessprobe) whose whole HTTP surface is one
//! or two routes decided per request. hyper is already linked through
//! tonic, so this costs no new dependency and no router.
//!
//! Go's `http.ServeMux` conventions are kept where the node sidecars rely
//! on them: handlers see any method, an unknown path is answered
//! `404 page not found\n` by the caller's handler (see [`not_found`]), and
//! plain-text bodies carry `text/plain; charset=utf-8`, the type Go sniffs
//! for them.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::Error;

/// The response body type handlers return.
pub type Body = Full<Bytes>;

/// Pause after a failed `accept` (out of file descriptors, say) before the
/// next one, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds a Go-style listen address: `:9808` (all interfaces, as Go's
/// `net.Listen`) binds `[::]:9808`, falling back to `0.0.0.0:9808` where
/// IPv6 is disabled; `host:port` binds as given.
///
/// # Errors
/// [`Error::HttpBind`] (both node sidecars treat it as fatal).
pub async fn bind(addr: &str) -> Result<TcpListener, Error> {
    let err = |source| Error::HttpBind {
        addr: addr.to_owned(),
        source,
    };
    match addr.strip_prefix(':') {
        Some(port) => match TcpListener::bind(format!("[::]:{port}")).await {
            Ok(listener) => Ok(listener),
            Err(_) => TcpListener::bind(format!("0.0.0.0:{port}"))
                .await
                .map_err(err),
        },
        None => TcpListener::bind(addr).await.map_err(err),
    }
}

/// A `text/plain; charset=utf-8` response with `status` and `body`.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Go's `http.NotFound`: `404` with `404 page not found\n`.
pub fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

/// Serves HTTP/1.1 on `listener` forever, one task per connection, each
/// request answered by `handler`. Accept errors are logged and retried.
pub async fn serve<H, F>(listener: TcpListener, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "HTTP accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = handler(request);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn answers_with_the_handler_and_go_texts() {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, |request: Request<Incoming>| async move {
            match request.uri().path() {
                "/healthz" => text(StatusCode::OK, "ok"),
                _ => not_found(),
            }
        }));
        for (path, want_status, want_body) in [
            ("/healthz", "200", "ok"),
            ("/other", "404", "404 page not found\n"),
        ] {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let req = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).await.unwrap();
            let (head, body) = buf.split_once("\r\n\r\n").unwrap();
            assert_eq!(&head[9..12], want_status, "{path}");
            assert!(
                head.to_lowercase()
                    .contains("content-type: text/plain; charset=utf-8")
            );
            assert_eq!(body, want_body);
        }
        server.abort();
    }
}
