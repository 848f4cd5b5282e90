//! Where a sink points: the user, host, port and base directory of its
//! `sftp://` URL.

use std::cell::Cell;

use backup_core::{Error, Result};
use percent_encoding::percent_decode_str;
use url::{Host, ParseError, Position, SyntaxViolation, Url};

use super::DEFAULT_PORT;

/// Where the sink points, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) user: String,
    pub(super) host: String,
    pub(super) port: u16,
    /// Absolute directory on the server, without a trailing `/` (except
    /// for the root itself).
    pub(super) base: String,
}

impl Target {
    /// Parses `sftp://[user@]host[:port]/absolute/path`; `%XX` escapes in
    /// the user name and the path are decoded.
    pub(super) fn parse(url: &str) -> Result<Self> {
        let invalid = |why: &str| {
            Error::InvalidArgument(format!(
                "invalid SFTP URL {url:?}: {why} (expected sftp://user@host:port/absolute/path)"
            ))
        };
        let Some(rest) = url.strip_prefix("sftp://") else {
            return Err(invalid("it must start with sftp://"));
        };
        // The url crate accepts a '%' without two hex digits after it (and
        // keeps it as it is); it reports it as a syntax violation.
        let bad_escape = Cell::new(false);
        let report = |violation: SyntaxViolation| {
            if violation == SyntaxViolation::PercentDecode {
                bad_escape.set(true);
            }
        };
        let parsed = Url::options()
            .syntax_violation_callback(Some(&report))
            .parse(url)
            .map_err(|error| {
                invalid(match error {
                    ParseError::EmptyHost => "the host is missing",
                    ParseError::InvalidPort => "the port must be a number from 1 to 65535",
                    ParseError::InvalidIpv6Address => "the IPv6 address in [] is invalid",
                    _ => "it is not a valid URL",
                })
            })?;
        if bad_escape.get() {
            return Err(invalid("a '%' is not followed by two hex digits"));
        }
        let host = match parsed.host() {
            Some(Host::Ipv6(address)) => address.to_string(),
            Some(Host::Ipv4(address)) => address.to_string(),
            Some(Host::Domain(domain)) if !domain.is_empty() => domain.to_owned(),
            _ => return Err(invalid("the host is missing")),
        };
        let port = match parsed.port() {
            None => DEFAULT_PORT,
            Some(0) => return Err(invalid("the port must be a number from 1 to 65535")),
            Some(port) => port,
        };
        if parsed.password().is_some() {
            return Err(invalid(
                "a password in the URL is not supported: the sink authenticates with a private key",
            ));
        }
        let decode = |text: &str| {
            percent_decode_str(text)
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| invalid("percent escapes do not decode to UTF-8"))
        };
        // The url crate drops the '@' of an empty user name.
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        let user = match parsed.username() {
            "" if authority.contains('@') => return Err(invalid("the user name is empty")),
            "" => std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .ok()
                .filter(|user| !user.is_empty())
                .ok_or_else(|| invalid("no user name given, and $USER is not set to default to"))?,
            user => decode(user)?,
        };
        if parsed.path().is_empty() {
            return Err(invalid("the absolute path of the repository is missing"));
        }
        // A '?' or '#' is part of the directory's name, as an SFTP path
        // has neither query nor fragment.
        let path = decode(&parsed[Position::BeforePath..])?;
        if path.contains('\0') {
            return Err(invalid("the path contains a NUL byte"));
        }
        let trimmed = path.trim_end_matches('/');
        let base = if trimmed.is_empty() {
            "/".to_owned()
        } else {
            trimmed.to_owned()
        };
        Ok(Self {
            user,
            host,
            port,
            base,
        })
    }

    /// `host:port` for messages, with IPv6 addresses bracketed.
    pub(super) fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The absolute path of a server path below the base.
    pub(super) fn join(&self, relative: &str) -> String {
        if self.base == "/" {
            format!("/{relative}")
        } else {
            format!("{}/{relative}", self.base)
        }
    }

    /// The URL for messages and [`Sink::location`](backup_core::Sink::location).
    pub(super) fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let port = if self.port == DEFAULT_PORT {
            String::new()
        } else {
            format!(":{}", self.port)
        };
        format!("sftp://{}@{host}{port}{}", self.user, self.base)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let target = Target::parse("sftp://backup@127.0.0.1:2222/srv/backups/repo").unwrap();
        assert_eq!(
            target,
            Target {
                user: "backup".into(),
                host: "127.0.0.1".into(),
                port: 2222,
                base: "/srv/backups/repo".into()
            }
        );
        assert_eq!(
            target.url(),
            "sftp://backup@127.0.0.1:2222/srv/backups/repo"
        );
        assert_eq!(target.join("a/b"), "/srv/backups/repo/a/b");

        let target = Target::parse("sftp://me@example.com/data/").unwrap();
        assert_eq!((target.port, target.base.as_str()), (22, "/data"));
        assert_eq!(target.url(), "sftp://me@example.com/data");

        let target = Target::parse("sftp://me@[::1]:2200/with%20space").unwrap();
        assert_eq!(target.host, "::1");
        assert_eq!(target.port, 2200);
        assert_eq!(target.base, "/with space");
        assert_eq!(target.host_port(), "[::1]:2200");

        let target = Target::parse("sftp://me@host/").unwrap();
        assert_eq!(target.join("k"), "/k");

        // Escapes in the user name; an empty port is the default one;
        // non-ASCII, '?' and '#' are part of the path.
        let target = Target::parse("sftp://a%40b@host:/d%C3%A9j%C3%A0/x?y#z").unwrap();
        assert_eq!(target.user, "a@b");
        assert_eq!(target.port, 22);
        assert_eq!(target.base, "/déjà/x?y#z");
        let target = Target::parse("sftp://me@Host.example/sp ace/%25").unwrap();
        assert_eq!(target.host, "Host.example");
        assert_eq!(target.base, "/sp ace/%");

        for bad in [
            "ssh://me@host/x",
            "sftp://me@host",
            "sftp://me@:22/x",
            "sftp://me@/x",
            "sftp://me@host:0/x",
            "sftp://me@host:99999/x",
            "sftp://me@host:port/x",
            "sftp://@host/x",
            "sftp://me:secret@host/x",
            "sftp://me@[::1/x",
            "sftp://me@host/%zz",
            "sftp://me@host/%c3",
            "sftp://me@host/a%00b",
        ] {
            assert!(
                matches!(Target::parse(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
    }
}
