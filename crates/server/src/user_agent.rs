//! The `userAgent` of `initialize`, in the real server's format:
//! `<client name>/<protocol version> (<os> <os version>; <arch>) <terminal> (<client name>; <client version>)`.
//! Clients parse the version after the first `/` to decide what the server supports, so it is
//! the codex protocol version tether implements, not tether's own version.

use std::sync::OnceLock;

use tether_protocol::ClientInfo;

/// The part that does not depend on the client, computed once.
fn platform() -> &'static str {
    static PLATFORM: OnceLock<String> = OnceLock::new();
    PLATFORM.get_or_init(|| {
        format!(
            "/{} ({}; {}) {}",
            tether_protocol::CODEX_PROTOCOL_VERSION,
            header_safe(&operating_system()),
            std::env::consts::ARCH,
            terminal(),
        )
    })
}

/// `<name> <version>` from os-release (read directly: asking a helper program costs milliseconds
/// of start-up), else the kernel's name.
fn operating_system() -> String {
    let release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let field = |key: &str| {
        release.lines().find_map(|line| {
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .map(|value| value.trim_matches('"').to_owned())
        })
    };
    match (field("NAME"), field("VERSION_ID")) {
        (Some(name), Some(version)) => format!("{name} {version}"),
        (Some(name), None) => name,
        _ => std::env::consts::OS.to_owned(),
    }
}

fn terminal() -> String {
    let name = std::env::var("TERM_PROGRAM")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|program| match std::env::var("TERM_PROGRAM_VERSION") {
            Ok(version) if !version.is_empty() => format!("{program}/{version}"),
            _ => program,
        })
        .or_else(|| std::env::var("TERM").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    header_safe(&name)
}

/// Replaces whatever an HTTP header value cannot carry.
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '\t' || (' '..='~').contains(&c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The `user-agent` of upstream requests made for the client `originator`.
pub fn upstream_user_agent(originator: &str) -> String {
    format!("{}{}", header_safe(originator), platform())
}

/// The full user agent for a client.
pub fn user_agent(client: &ClientInfo) -> String {
    format!(
        "{}{} ({}; {})",
        client.name,
        platform(),
        client.name,
        header_safe(&client.version)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_the_real_shape() {
        let client = ClientInfo {
            name: "probe".into(),
            version: "1.0".into(),
            title: None,
        };
        let agent = user_agent(&client);
        let prefix = "probe/0.169.0 (";
        assert!(agent.starts_with(prefix), "{agent}");
        assert!(agent.ends_with(" (probe; 1.0)"), "{agent}");
        assert!(
            agent.contains(&format!("; {}) ", std::env::consts::ARCH)),
            "{agent}"
        );
        assert!(http::HeaderValue::from_str(&agent).is_ok());
        let upstream = upstream_user_agent("probe");
        assert!(upstream.starts_with(prefix), "{upstream}");
        assert!(agent.starts_with(&upstream), "{agent}");
    }
}
