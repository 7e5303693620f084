//! `/healthz`'s self-check against real sockets: missing (404), not a
//! socket (500), another driver's answer (500), ours (200).

use std::time::Duration;

use csi_client::pluginregistration::registration_server::RegistrationServer;
use node_driver_registrar::health::{Health, check};
use node_driver_registrar::registration::{Service, plugin_info};
use tokio_stream::wrappers::UnixListenerStream;

#[tokio::test]
async fn verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d-reg.sock");
    let t = Duration::from_secs(1);
    assert_eq!(check(&path, "d", t).await, Health::NoSocket);

    std::fs::write(&path, b"x").unwrap();
    assert!(matches!(check(&path, "d", t).await, Health::Failed(e) if e.contains("not a socket")));
    std::fs::remove_file(&path).unwrap();

    // A socket nobody listens on any more.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(matches!(
        check(&path, "d", t).await,
        Health::Failed(e) if e.starts_with("error connecting to node-registrar socket")
    ));
    std::fs::remove_file(&path).unwrap();

    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let service = Service::new(
        plugin_info("other", "/x"),
        tx,
        std::sync::Arc::new(|_: &str| {}),
    );
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RegistrationServer::new(service))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    assert_eq!(
        check(&path, "d", t).await,
        Health::Failed("invalid driver name other".into())
    );
    assert_eq!(check(&path, "other", t).await, Health::Ok);
    server.abort();
}
