//! Parsing of the `--csi-address` forms csi-lib-utils accepts.

use crate::error::Error;
use std::fmt;
use std::path::PathBuf;

/// Where the driver listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Unix domain socket path.
    Unix(PathBuf),
    /// A TCP `host:port` (plaintext HTTP/2, like upstream's insecure dial).
    Tcp(String),
}

impl Target {
    /// Parses an address:
    /// - `/path` and `unix:///path` (or `unix://rel`, `unix:path`) → [`Target::Unix`];
    /// - `dns:///host:port`, `dns://resolver/host:port`, `passthrough:///host:port`,
    ///   `http://host:port` and bare `host:port` → [`Target::Tcp`].
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] for an empty path, `https://` (upstream never
    /// uses TLS to the driver), unknown schemes and TCP targets without a port.
    pub fn parse(address: &str) -> Result<Target, Error> {
        let invalid = |reason: &str| Error::InvalidAddress {
            address: address.to_owned(),
            reason: reason.to_owned(),
        };
        if address.starts_with('/') {
            return Ok(Target::Unix(PathBuf::from(address)));
        }
        if let Some(rest) = address.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(invalid("empty unix socket path"));
            }
            return Ok(Target::Unix(PathBuf::from(path)));
        }
        let host_port = if let Some(rest) = address
            .strip_prefix("dns:")
            .or_else(|| address.strip_prefix("passthrough:"))
        {
            // `dns:///h:p` has an empty authority; `dns://auth/h:p` names a
            // resolver we do not use.
            match rest.strip_prefix("//") {
                Some(with_authority) => match with_authority.split_once('/') {
                    Some((_authority, endpoint)) => endpoint,
                    None => with_authority,
                },
                None => rest,
            }
        } else if let Some(rest) = address.strip_prefix("http://") {
            rest.trim_end_matches('/')
        } else if address.starts_with("https://") {
            return Err(invalid("TLS is not supported for CSI driver connections"));
        } else if address.contains("://") {
            return Err(invalid("unsupported scheme"));
        } else {
            address
        };
        match host_port.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Target::Tcp(host_port.to_owned()))
            }
            _ => Err(invalid("expected host:port")),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "unix://{}", path.display()),
            Target::Tcp(host_port) => f.write_str(host_port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Target;
    use std::path::PathBuf;

    fn unix(p: &str) -> Target {
        Target::Unix(PathBuf::from(p))
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(
            Target::parse("/csi/csi.sock").ok(),
            Some(unix("/csi/csi.sock"))
        );
        assert_eq!(
            Target::parse("unix:///csi/csi.sock").ok(),
            Some(unix("/csi/csi.sock"))
        );
        assert_eq!(
            Target::parse("unix:/csi/csi.sock").ok(),
            Some(unix("/csi/csi.sock"))
        );
        assert_eq!(
            Target::parse("unix://csi.sock").ok(),
            Some(unix("csi.sock"))
        );
        let tcp = |s: &str| Some(Target::Tcp(s.to_owned()));
        assert_eq!(
            Target::parse("dns:///driver:10000").ok(),
            tcp("driver:10000")
        );
        assert_eq!(
            Target::parse("dns://8.8.8.8/driver:10000").ok(),
            tcp("driver:10000")
        );
        assert_eq!(
            Target::parse("passthrough:///driver:1").ok(),
            tcp("driver:1")
        );
        assert_eq!(
            Target::parse("http://127.0.0.1:9000/").ok(),
            tcp("127.0.0.1:9000")
        );
        assert_eq!(Target::parse("[::1]:9000").ok(), tcp("[::1]:9000"));
        assert_eq!(unix("/a").to_string(), "unix:///a");
    }

    #[test]
    fn rejected_forms() {
        for bad in [
            "",
            "unix://",
            "https://h:1",
            "ftp://h:1",
            "driver",
            "h:notaport",
            ":1",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
