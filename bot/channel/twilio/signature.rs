//! The first thing the Twilio webhooks do with a request: check its `X-Twilio-Signature`, so that
//! nothing but Twilio can post inbound messages or delivery statuses to carebot.
//!
//! Twilio signs the URL it called followed by every form parameter, name then value, sorted;
//! the key is the account's auth token and the MAC is HMAC-SHA1 in base64. For JSON bodies it
//! signs the URL alone, which carries `bodySHA256` (the hex SHA-256 of the body). What a
//! validator must accept is pinned by the official SDKs' tests, gathered in
//! `tests/fixtures/twilio_signature/`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The signature Twilio would send for a request to `url` with these form parameters.
///
/// Parameters are sorted by name, then value, and every repeated name is kept with each of its
/// values (a message with several `MediaUrl`s, say); only exact duplicate pairs count once, as
/// in every official SDK.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    mac(auth_token, url, &signed_params(params))
}

/// Whether `signature` is Twilio's for this form request.
///
/// Like Twilio's own validators, it tries the URL as given, without its port and with the
/// scheme's default port (:443 or :80), because what Twilio called and what the server sees can
/// differ behind a proxy; and, for each, the URL with the characters a browser would
/// percent-encode (a `'` in the query becomes `%27`) encoded. Each form needs the auth token to
/// sign, so accepting several weakens nothing. Comparisons take constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    if signature.is_empty() {
        return false;
    }
    let payload = signed_params(params);
    url_forms(url).iter().any(|form| {
        let expected = mac(auth_token, form, &payload);
        expected.as_bytes().ct_eq(signature.as_bytes()).into()
    })
}

/// Whether `signature` is Twilio's for a request with a JSON body: the URL must carry
/// `bodySHA256`, be signed with no parameters, and the hash must be the body's. A JSON request
/// without `bodySHA256` is rejected, since its body would then be unauthenticated.
pub fn verify_with_body(auth_token: &str, url: &str, body: &[u8], signature: &str) -> bool {
    let Some(claimed) = query_param(url, "bodySHA256") else {
        return false;
    };
    let actual = hex(&Sha256::digest(body));
    let body_matches: bool = actual
        .as_bytes()
        .ct_eq(claimed.to_ascii_lowercase().as_bytes())
        .into();
    // Both checks always run, so the time taken does not tell which one failed.
    let signature_matches = verify(auth_token, url, &[], signature);
    body_matches & signature_matches
}

fn mac(auth_token: &str, url: &str, payload: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    mac.update(payload.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// The part of the signed string after the URL: each name and value, sorted (byte order, as
/// Twilio sorts), exact duplicates once.
fn signed_params(params: &[(String, String)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
        .into_iter()
        .flat_map(|(name, value)| [name, value])
        .collect()
}

/// Every form of `url` that Twilio's validators accept a signature for, without repeats.
fn url_forms(url: &str) -> Vec<String> {
    let encoded = encode_like_a_browser(url);
    let mut forms: Vec<String> = Vec::with_capacity(6);
    for base in [url.to_owned(), encoded] {
        let variants = [without_port(&base), with_default_port(&base)];
        for form in std::iter::once(base).chain(variants.into_iter().flatten()) {
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
    }
    forms
}

/// Where the parts of a URL's authority lie: the scheme, the byte index where the authority
/// ends, and the byte index of the `:` before a port, if there is one.
fn authority(url: &str) -> Option<(&str, usize, Option<usize>)> {
    let scheme_end = url.find("://")?;
    let start = scheme_end + 3;
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    // user:password@ comes before the host, and its ':' is not a port.
    let host_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    let host = &url[host_start..end];
    let colon = if host.starts_with('[') {
        host.find("]:").map(|i| i + 1) // [IPv6]:port
    } else {
        host.rfind(':')
    };
    let colon = colon
        .filter(|&i| host[i + 1..].bytes().all(|b| b.is_ascii_digit()))
        .map(|i| host_start + i);
    Some((&url[..scheme_end], end, colon))
}

/// `https://host:1234/x` -> `https://host/x`; `None` when there is no port. Any port goes, not
/// only the default one: Twilio signs the URL as configured, and a proxy may add its own port.
fn without_port(url: &str) -> Option<String> {
    let (_, end, colon) = authority(url)?;
    let colon = colon?;
    Some(format!("{}{}", &url[..colon], &url[end..]))
}

/// `https://host/x` -> `https://host:443/x` (`:80` for http); `None` when a port is already
/// there or the scheme has no default.
fn with_default_port(url: &str) -> Option<String> {
    let (scheme, end, colon) = authority(url)?;
    if colon.is_some() {
        return None;
    }
    let port = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else if scheme.eq_ignore_ascii_case("http") {
        "80"
    } else {
        return None;
    };
    Some(format!("{}:{port}{}", &url[..end], &url[end..]))
}

/// The URL with its path and query percent-encoded the way a browser (and Twilio's Node
/// validator) serializes them: spaces, quotes, angle brackets and non-ASCII everywhere, `'` in
/// the query, backticks and braces in the path. The host is left as written: Twilio does not
/// lowercase it when it signs.
fn encode_like_a_browser(url: &str) -> String {
    let Some((_, end, _)) = authority(url) else {
        return url.to_owned();
    };
    let (rest, fragment) = match url[end..].find('#') {
        Some(i) => url[end..].split_at(i),
        None => (&url[end..], ""),
    };
    let mut out = String::with_capacity(url.len() + 16);
    out.push_str(&url[..end]);
    let mut in_query = false;
    for c in rest.chars() {
        let encode = !c.is_ascii()
            || c.is_ascii_control()
            || matches!(c, ' ' | '"' | '<' | '>')
            || (in_query && c == '\'')
            || (!in_query && matches!(c, '`' | '{' | '}'));
        if encode {
            let mut buf = [0; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            in_query |= c == '?';
            out.push(c);
        }
    }
    out.push_str(fragment);
    out
}

/// The raw value of the first query parameter called `name`.
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/twilio_signature/twilio_signature_vectors.json"
    ));
    const HMAC_STRINGS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/twilio_signature/twilio_signature_hmac_strings.csv"
    ));

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|&(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    /// The vectors write parameters as a JSON object whose values are a string, a list of
    /// strings (a repeated parameter) or null (sent as an empty value).
    fn params_of(vector: &serde_json::Value) -> Vec<(String, String)> {
        let mut params = Vec::new();
        for (name, value) in vector["params"].as_object().unwrap() {
            match value {
                serde_json::Value::Array(values) => {
                    for value in values {
                        params.push((name.clone(), value.as_str().unwrap().to_owned()));
                    }
                }
                serde_json::Value::Null => params.push((name.clone(), String::new())),
                value => params.push((name.clone(), value.as_str().unwrap().to_owned())),
            }
        }
        params
    }

    #[test]
    fn every_sdk_vector_is_accepted_or_rejected_as_the_sdks_do() {
        let doc: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let cases = doc["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 49);
        for case in cases {
            let id = case["id"].as_str().unwrap();
            let token = case["auth_token"].as_str().unwrap();
            let url = case["url"].as_str().unwrap();
            let signature = case["signature"].as_str().unwrap();
            let params = params_of(case);
            // A body with no form parameters is a JSON request; a form body was parsed into
            // the parameters already.
            let valid = match case["body"].as_str() {
                Some(body) if params.is_empty() => {
                    verify_with_body(token, url, body.as_bytes(), signature)
                }
                _ => verify(token, url, &params, signature),
            };
            assert_eq!(valid, case["expect_valid"], "{id}");
            if case["expect_valid"] == true && case["url_form_that_was_signed"] == "as_is" {
                assert_eq!(sign(token, url, &params), signature, "{id}");
            }
        }
    }

    #[test]
    fn every_hmac_string_gets_its_signature() {
        let mut reader = csv::Reader::from_reader(HMAC_STRINGS.as_bytes());
        let mut count = 0;
        for record in reader.records() {
            let record = record.unwrap();
            let (id, token, signed, expected) = (&record[0], &record[1], &record[2], &record[3]);
            assert_eq!(sign(token, signed, &[]), expected, "{id}");
            count += 1;
        }
        assert_eq!(count, 42);
    }

    #[test]
    fn a_changed_parameter_or_another_token_fails() {
        let url = "https://carebot.example/webhooks/twilio/sms";
        let params = pairs(&[("From", "+13125550123"), ("Body", "STOP")]);
        let signature = sign("secret", url, &params);
        assert!(verify("secret", url, &params, &signature));
        let changed = pairs(&[("From", "+13125550123"), ("Body", "START")]);
        assert!(!verify("secret", url, &changed, &signature));
        assert!(!verify("other", url, &params, &signature));
        assert!(!verify("secret", url, &params, ""));
    }

    #[test]
    fn repeated_parameters_are_all_signed_in_value_order() {
        let url = "https://carebot.example/webhooks/twilio/sms";
        let both = pairs(&[("MediaUrl", "https://b"), ("MediaUrl", "https://a")]);
        let signature = sign("secret", url, &both);
        let reordered = pairs(&[("MediaUrl", "https://a"), ("MediaUrl", "https://b")]);
        assert!(verify("secret", url, &reordered, &signature));
        let one_dropped = pairs(&[("MediaUrl", "https://a")]);
        assert!(!verify("secret", url, &one_dropped, &signature));
    }

    #[test]
    fn a_port_added_or_removed_by_a_proxy_still_verifies() {
        let params = pairs(&[("Body", "hi")]);
        let signed = sign("secret", "https://carebot.example/sms", &params);
        assert!(verify(
            "secret",
            "https://carebot.example:443/sms",
            &params,
            &signed
        ));
        let signed = sign("secret", "https://carebot.example:443/sms", &params);
        assert!(verify(
            "secret",
            "https://carebot.example/sms",
            &params,
            &signed
        ));
        let signed = sign("secret", "http://carebot.example:80/sms", &params);
        assert!(verify(
            "secret",
            "http://carebot.example/sms",
            &params,
            &signed
        ));
        // Another path is another request.
        assert!(!verify(
            "secret",
            "https://carebot.example/status",
            &params,
            &signed
        ));
    }

    #[test]
    fn url_forms_keep_credentials_and_ipv6_hosts_intact() {
        assert_eq!(
            url_forms("https://u:p@host/x?a=1"),
            ["https://u:p@host/x?a=1", "https://u:p@host:443/x?a=1"]
        );
        assert_eq!(
            url_forms("http://[::1]:8080/x"),
            ["http://[::1]:8080/x", "http://[::1]/x"]
        );
        assert_eq!(
            url_forms("https://host/a b?q=it's"),
            [
                "https://host/a b?q=it's",
                "https://host:443/a b?q=it's",
                "https://host/a%20b?q=it%27s",
                "https://host:443/a%20b?q=it%27s",
            ]
        );
    }

    #[test]
    fn a_json_body_must_match_its_bodysha256() {
        let body = br#"{"ok":true}"#;
        let url = format!(
            "https://carebot.example/hook?bodySHA256={}",
            hex(&Sha256::digest(body))
        );
        let signature = sign("secret", &url, &[]);
        assert!(verify_with_body("secret", &url, body, &signature));
        assert!(!verify_with_body(
            "secret",
            &url,
            br#"{"ok":false}"#,
            &signature
        ));
        let unhashed = "https://carebot.example/hook";
        assert!(!verify_with_body(
            "secret",
            unhashed,
            body,
            &sign("secret", unhashed, &[])
        ));
    }
}
