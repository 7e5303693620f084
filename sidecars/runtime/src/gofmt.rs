//! Go's formatting of the values that end up in user-visible texts (Event
//! messages, condition messages), so a Rust sidecar's texts read byte for
//! byte like the Go sidecar's.
//!
//! * [`quote`]: `%q` of a string (`strconv.Quote`).
//! * [`quote_list`]: `%q` of a `[]string`.
//! * [`api_error`]: what client-go's error for a failed API call prints.

/// `%q` of a Go string (`strconv.Quote`): double-quoted, with `"` and `\`
/// escaped, `\a \b \f \n \r \t \v` for those controls, `\xHH` for other
/// ASCII controls and DEL, and `\uHHHH` / `\UHHHHHHHH` for non-printable
/// Unicode. Printable characters, including non-ASCII letters, stay as they
/// are.
///
/// "Printable" follows Go's `unicode.IsPrint` for everything a Kubernetes
/// name or label can hold; for the rest of Unicode it is approximated as
/// "not a control, not whitespace other than the ASCII space".
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            ' '..='~' => out.push(c),
            c if c.is_ascii() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() || c.is_whitespace() || is_format(c) => {
                let n = c as u32;
                if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Unicode format characters Go does not print (zero-width spaces and
/// joiners, bidi marks, the byte-order mark).
fn is_format(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

/// `%q` of a Go `[]string`: `["a" "b"]`, each element as [`quote`],
/// separated by single spaces.
pub fn quote_list<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", quoted.join(" "))
}

/// The text of a failed API call as client-go's error prints it, the text
/// upstream sidecars put into events after their own prefix.
///
/// For an API server answer (`kube::Error::Api`) that is the Status
/// `message` alone, e.g. `secrets "creds" not found` or
/// `secrets "creds" is forbidden: User "…" cannot get resource "secrets" …`,
/// as Go's `StatusError.Error()`. An answer without a message gets
/// client-go's generic text for its HTTP code (without the `(get secrets
/// creds)` suffix client-go adds, which needs the request). Any other
/// failure (transport, decoding) is the error's short `Display`, never its
/// `Debug` form.
pub fn api_error(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        kube::Error::Api(status) => generic_status_message(status.code),
        other => other.to_string(),
    }
}

/// client-go's `NewGenericServerResponse` text for an HTTP code.
fn generic_status_message(code: u16) -> String {
    match code {
        409 => "the server reported a conflict".into(),
        404 => "the server could not find the requested resource".into(),
        400 => "the server rejected our request for an unknown reason".into(),
        401 => "the server has asked for the client to provide credentials".into(),
        406 => "the server was unable to respond with a content type that the client supports"
            .into(),
        405 => "the server does not allow this method on the requested resource".into(),
        422 => "the server rejected our request due to an error in our request".into(),
        503 => "the server is currently unable to handle the request".into(),
        504 => "the server was unable to return a response in the time allotted, but may still be processing the request".into(),
        429 => "the server has received too many requests and has asked us to try again later"
            .into(),
        c if c >= 500 => {
            "an error on the server (\"\") has prevented the request from succeeding".into()
        }
        c => format!("the server responded with the status code {c} but did not return more information"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values are what Go's `fmt.Sprintf("%q", s)` prints.
    #[test]
    fn quote_matches_go() {
        let cases: &[(&str, &str)] = &[
            ("n1", r#""n1""#),
            ("", r#""""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("tab\there\nnl", r#""tab\there\nnl""#),
            ("\u{1}\u{7f}", r#""\x01\x7f""#),
            ("\u{7}\u{8}\u{b}\u{c}\r", r#""\a\b\v\f\r""#),
            ("zone-ä", "\"zone-ä\""),
            ("\u{a0}\u{200b}", r#""\u00a0\u200b""#),
            ("${pvc.annotations['k']}", r#""${pvc.annotations['k']}""#),
        ];
        for (input, want) in cases {
            assert_eq!(quote(input), *want, "{input:?}");
        }
    }

    /// Go: `fmt.Sprintf("%q", []string{"pvc.name", "x"})`.
    #[test]
    fn quote_list_matches_go() {
        assert_eq!(quote_list(&["pvc.name", "x"]), r#"["pvc.name" "x"]"#);
        assert_eq!(quote_list::<&str>(&[]), "[]");
    }

    fn status(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure(message, "").with_code(code),
        ))
    }

    /// client-go: `StatusError.Error()` is the Status message alone.
    #[test]
    fn api_error_is_the_status_message() {
        assert_eq!(
            api_error(&status(404, "secrets \"creds\" not found")),
            "secrets \"creds\" not found"
        );
        let forbidden = "secrets \"creds\" is forbidden: User \"system:serviceaccount:kube-system:csi\" cannot get resource \"secrets\" in API group \"\" in the namespace \"team-a\"";
        assert_eq!(api_error(&status(403, forbidden)), forbidden);
    }

    #[test]
    fn api_error_without_message_is_client_gos_generic_text() {
        assert_eq!(
            api_error(&status(404, "")),
            "the server could not find the requested resource"
        );
        assert_eq!(
            api_error(&status(418, "")),
            "the server responded with the status code 418 but did not return more information"
        );
    }

    #[test]
    fn other_errors_are_short() {
        let e = kube::Error::LinesCodecMaxLineLengthExceeded;
        assert_eq!(api_error(&e), "Error finding newline character");
    }
}
