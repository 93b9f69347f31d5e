use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// One `--listen` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddress {
    /// `stdio://`: newline-delimited JSON on stdin/stdout.
    Stdio,
    /// `unix://` or `unix://PATH`: WebSocket over a unix stream socket; `None` is the default path
    /// under the home directory.
    Unix(Option<PathBuf>),
    /// `ws://IP:PORT`.
    WebSocket(SocketAddr),
}

impl FromStr for ListenAddress {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            format!(
                "unsupported --listen URL {url:?}: expected stdio://, unix://[PATH] or ws://IP:PORT"
            )
        };
        if url == "stdio://" || url == "stdio" {
            return Ok(ListenAddress::Stdio);
        }
        if let Some(path) = url.strip_prefix("unix://") {
            return Ok(ListenAddress::Unix(
                (!path.is_empty()).then(|| PathBuf::from(path)),
            ));
        }
        if let Some(address) = url.strip_prefix("ws://") {
            let address = address.strip_suffix('/').unwrap_or(address);
            return address
                .parse()
                .map(ListenAddress::WebSocket)
                .map_err(|_| invalid());
        }
        Err(invalid())
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddress::Stdio => f.write_str("stdio://"),
            ListenAddress::Unix(None) => f.write_str("unix://"),
            ListenAddress::Unix(Some(path)) => write!(f, "unix://{}", path.display()),
            ListenAddress::WebSocket(address) => write!(f, "ws://{address}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!("stdio://".parse(), Ok(ListenAddress::Stdio));
        assert_eq!("unix://".parse(), Ok(ListenAddress::Unix(None)));
        assert_eq!(
            "unix:///tmp/t.sock".parse(),
            Ok(ListenAddress::Unix(Some("/tmp/t.sock".into())))
        );
        assert_eq!(
            "ws://127.0.0.1:4500".parse(),
            Ok(ListenAddress::WebSocket("127.0.0.1:4500".parse().unwrap()))
        );
        assert_eq!(
            "ws://[::1]:0/".parse(),
            Ok(ListenAddress::WebSocket("[::1]:0".parse().unwrap()))
        );
        for bad in [
            "ws://localhost:1",
            "http://127.0.0.1:1",
            "tcp://x",
            "",
            "ws://127.0.0.1",
        ] {
            assert!(bad.parse::<ListenAddress>().is_err(), "{bad}");
        }
    }
}
