//! libpq connection strings: the URL form (`postgresql://user@host/db`)
//! and the keyword form (`host=... dbname=...`), as every PostgreSQL tool
//! takes them.

/// The connection string for database `database` instead of the one it
/// names.
pub(crate) fn for_database(conninfo: &str, database: &str) -> String {
    if is_url(conninfo) {
        if let Ok(mut url) = url::Url::parse(conninfo) {
            url.set_path(&format!(
                "/{}",
                percent_encoding::utf8_percent_encode(database, percent_encoding::NON_ALPHANUMERIC)
            ));
            return url.to_string();
        }
    }
    // In the keyword form a later keyword wins over an earlier one.
    format!("{conninfo} dbname={}", quote_value(database))
}

/// The connection string without its password, for messages and manifests.
pub(crate) fn redact(conninfo: &str) -> String {
    if is_url(conninfo) {
        if let Ok(mut url) = url::Url::parse(conninfo) {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if key == "password" {
                        "***".into()
                    } else {
                        value.into_owned()
                    };
                    (key.into_owned(), value)
                })
                .collect();
            if !pairs.is_empty() {
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            return url.to_string();
        }
        return "(a connection URL that does not parse)".into();
    }
    let mut out = Vec::new();
    let mut words = keyword_pairs(conninfo).into_iter();
    for (key, value) in words.by_ref() {
        if key == "password" {
            out.push("password=***".to_string());
        } else {
            out.push(format!("{key}={}", quote_value(&value)));
        }
    }
    out.join(" ")
}

fn is_url(conninfo: &str) -> bool {
    conninfo.starts_with("postgresql://") || conninfo.starts_with("postgres://")
}

/// A keyword value quoted as libpq reads it.
fn quote_value(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '\'', '\\', '\t', '\n']) {
        return value.to_string();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The keyword form's pairs, parsed as libpq parses them (single quotes,
/// backslash escapes, spaces around `=`).
fn keyword_pairs(conninfo: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            pairs.push((key, String::new()));
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_database_replaces_the_one_named() {
        assert_eq!(
            for_database(
                "postgresql://app:pw@db:5432/postgres?sslmode=require",
                "shop"
            ),
            "postgresql://app:pw@db:5432/shop?sslmode=require"
        );
        assert_eq!(
            for_database("postgres://db/postgres", "my db"),
            "postgres://db/my%20db"
        );
        assert_eq!(
            for_database("host=db user=app dbname=postgres", "it's"),
            r"host=db user=app dbname=postgres dbname='it\'s'"
        );
    }

    #[test]
    fn passwords_are_hidden_in_both_forms() {
        assert_eq!(
            redact("postgresql://app:secret@db/x?password=also&sslmode=require"),
            "postgresql://app:***@db/x?password=***&sslmode=require"
        );
        assert_eq!(redact("postgresql://app@db/x"), "postgresql://app@db/x");
        let redacted = redact("host=db password = 'se cret' user=app");
        assert_eq!(redacted, "host=db password=*** user=app");
        assert!(!redact("password=secret").contains("secret"));
    }
}
