//! The exact bytes a device key signs. Written by hand, not through `serde_json::to_vec` of a map,
//! so that key order can never depend on a serde_json feature flag enabled elsewhere in the build.

use serde_json::Value;

use crate::{DeviceKeyError, SignPayload};

const SIGNING_DOMAIN: &str = "codex-device-key-sign-payload/v1";

/// UTF-8 JSON of `{"domain":…,"payload":…}` with every object's keys sorted (by UTF-8 bytes), no
/// insignificant whitespace, and strings escaped exactly as serde_json escapes them.
pub fn signed_payload_bytes(payload: &SignPayload) -> Result<Vec<u8>, DeviceKeyError> {
    let payload =
        serde_json::to_value(payload).map_err(|err| DeviceKeyError::Crypto(err.to_string()))?;
    let envelope = Value::Object(
        [
            (
                "domain".to_owned(),
                Value::String(SIGNING_DOMAIN.to_owned()),
            ),
            ("payload".to_owned(), payload),
        ]
        .into_iter()
        .collect(),
    );
    let mut out = Vec::with_capacity(512);
    write_canonical(&envelope, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), DeviceKeyError> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (index, (key, member)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out)?;
                out.push(b':');
                write_canonical(member, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out)?,
    }
    Ok(())
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) -> Result<(), DeviceKeyError> {
    serde_json::to_writer(out, value).map_err(|err| DeviceKeyError::Crypto(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::test_vectors;

    fn connection(account_user_id: &str, session_id: &str) -> SignPayload {
        let mut payload = test_vectors::connection();
        payload.account_user_id = account_user_id.into();
        payload.session_id = session_id.into();
        SignPayload::Connection(payload)
    }

    fn text(payload: &SignPayload) -> String {
        String::from_utf8(signed_payload_bytes(payload).unwrap()).unwrap()
    }

    #[test]
    fn connection_vector_from_the_spec() {
        assert_eq!(
            text(&connection("account-user-1", "wssess_123")),
            r#"{"domain":"codex-device-key-sign-payload/v1","payload":{"accountUserId":"account-user-1","audience":"remote_control_client_websocket","clientId":"cli_123","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","scopes":["remote_control_controller_websocket"],"sessionId":"wssess_123","targetOrigin":"https://chatgpt.com","targetPath":"/api/codex/remote/control/client","tokenExpiresAt":1700000000,"tokenSha256Base64url":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU","type":"remoteControlClientConnection"}}"#
        );
    }

    #[test]
    fn enrollment_vector_from_the_spec() {
        let payload = SignPayload::Enrollment(test_vectors::enrollment());
        assert_eq!(
            text(&payload),
            r#"{"domain":"codex-device-key-sign-payload/v1","payload":{"accountUserId":"account-user-1","audience":"remote_control_client_enrollment","challengeExpiresAt":1700000060,"challengeId":"rch_123","clientId":"cli_123","deviceIdentitySha256Base64url":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","targetOrigin":"https://chatgpt.com","targetPath":"/wham/remote/control/client/enroll","type":"remoteControlClientEnrollment"}}"#
        );
    }

    #[test]
    fn quotes_backslashes_and_control_characters_are_escaped_like_serde_json() {
        let account = "a\"b\\c\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}/d";
        let bytes = signed_payload_bytes(&connection(account, "s")).unwrap();
        let expected =
            r#""accountUserId":"a\"b\\c\n\r\t\b\f\u0000\u001f"#.to_owned() + "\u{7f}/d\"";
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains(&expected), "{text}");
    }

    #[test]
    fn non_ascii_is_written_raw_as_utf8() {
        let bytes = signed_payload_bytes(&connection("ünïcødé-✓-😀", "sess\u{2028}ion")).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""accountUserId":"ünïcødé-✓-😀""#));
        assert!(text.contains("\"sessionId\":\"sess\u{2028}ion\""));
        // The emoji is its four raw UTF-8 bytes, not a \u escape pair.
        assert!(bytes.windows(4).any(|w| w == [0xF0, 0x9F, 0x98, 0x80]));
        assert!(!text.contains("\\u"));
    }

    #[test]
    fn full_vector_with_escapes_and_non_ascii() {
        let mut payload = test_vectors::connection();
        payload.account_user_id = "Zoë \"Q\" \\ 東京".into();
        payload.client_id = "tab\tnl\ncr\rbs\u{8}ff\u{c}nul\u{0}us\u{1f}del\u{7f}".into();
        payload.session_id = "</script>\u{2028}😀".into();
        assert_eq!(
            text(&SignPayload::Connection(payload)),
            concat!(
                r#"{"domain":"codex-device-key-sign-payload/v1","payload":{"accountUserId":"Zoë \"Q\" \\ 東京","#,
                r#""audience":"remote_control_client_websocket","clientId":"tab\tnl\ncr\rbs\bff\fnul\u0000us\u001fdel"#,
                "\u{7f}",
                r#"","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","scopes":["remote_control_controller_websocket"],"#,
                "\"sessionId\":\"</script>\u{2028}😀\",",
                r#""targetOrigin":"https://chatgpt.com","targetPath":"/api/codex/remote/control/client","tokenExpiresAt":1700000000,"#,
                r#""tokenSha256Base64url":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU","type":"remoteControlClientConnection"}}"#
            )
        );
    }

    #[test]
    fn keys_sort_by_bytes_at_every_level() {
        let value: Value = serde_json::from_str(
            r#"{"b":{"z":1,"a":[{"y":2,"x":3}]},"a":-4,"B":"é","é":null,"aa":true}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        write_canonical(&value, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"B":"é","a":-4,"aa":true,"b":{"a":[{"x":3,"y":2}],"z":1},"é":null}"#
        );
    }
}
