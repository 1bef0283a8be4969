//! The API's parsing of publications and its answers, without a server.

use super::*;

fn parse(body: Value) -> Result<Item, ApiError> {
    let config = HubConfig {
        max_channel_name: 8,
        max_identity: 5,
        ..HubConfig::default()
    };
    item(body, &config)
}

/// The status and the text the caller would get.
fn refusal(body: Value) -> (u16, String) {
    let e = parse(body.clone()).expect_err(&body.to_string());
    (e.status().as_u16(), e.to_string())
}

#[test]
fn items_become_publications() {
    let (from, p) = parse(json!({"channel": "news", "data": [1], "identity": "bot"})).unwrap();
    assert_eq!(from.as_deref(), Some("bot"));
    assert!(matches!(p, Publication::Message { ref channel, ref data }
        if channel.as_str() == "news" && *data == json!([1])));
    let (from, p) = parse(json!({"channel": "c", "type": "command",
        "data": {"command": "poke", "options": {"x": 1}}}))
    .unwrap();
    assert_eq!(from, None);
    assert!(
        matches!(p, Publication::Command { ref name, ref options, .. }
        if name.as_str() == "poke" && *options == json!({"x": 1}))
    );
    let (_, p) = parse(json!({"to": "ann", "data": "hi", "channel": 5})).unwrap();
    assert!(matches!(p, Publication::Direct { ref to, .. } if to.as_str() == "ann"));
    let (_, p) = parse(json!({"channel": "c", "type": null})).unwrap();
    assert!(matches!(p, Publication::Message { ref data, .. } if data.is_null()));
}

proptest::proptest! {
    #[test]
    fn items_keep_the_payload_as_it_was_sent(d in crate::json_doc::doc()) {
        let text = d.text();
        let message = format!(r#"{{"channel":"c","data":{text}}}"#);
        let (_, p) = parse(serde_json::from_str(&message).unwrap()).unwrap();
        let Publication::Message { data, .. } = p else { panic!("{p:?}") };
        proptest::prop_assert!(d.is(&data), "{data}");
        let command = format!(
            r#"{{"channel":"c","type":"command","data":{{"command":"poke","options":{text}}}}}"#
        );
        let (_, p) = parse(serde_json::from_str(&command).unwrap()).unwrap();
        let Publication::Command { options, .. } = p else { panic!("{p:?}") };
        proptest::prop_assert!(d.is(&options), "{options}");
    }
}

#[test]
fn malformed_items_are_refused_with_the_reason() {
    let cases = [
        (json!(42), "each message must be a JSON object"),
        (json!(["c"]), "each message must be a JSON object"),
        (json!({"data": 1}), "missing \"channel\""),
        (json!({"channel": ""}), "channel must be a non-empty string"),
        (json!({"channel": 7}), "channel must be a non-empty string"),
        (
            json!({"channel": null}),
            "channel must be a non-empty string",
        ),
        (
            json!({"channel": "ninechars"}),
            "channel name longer than 8 bytes",
        ),
        (
            json!({"channel": "a\u{0}"}),
            "channel name contains control characters",
        ),
        (
            json!({"channel": "c", "identity": 5}),
            "identity must be a string",
        ),
        (
            json!({"channel": "c", "identity": "sixsix"}),
            "identity longer than 5 bytes",
        ),
        (
            json!({"channel": "c", "type": "shout"}),
            "\"type\" must be \"message\" or \"command\"",
        ),
        (
            json!({"channel": "c", "type": 1}),
            "\"type\" must be \"message\" or \"command\"",
        ),
        (
            json!({"channel": "c", "type": "command", "data": {}}),
            "a command needs data.command, a non-empty string",
        ),
        (
            json!({"channel": "c", "type": "command", "data": {"command": ""}}),
            "a command needs data.command, a non-empty string",
        ),
        (
            json!({"channel": "c", "type": "command", "data": {"command": 3}}),
            "a command needs data.command, a non-empty string",
        ),
        (
            json!({"channel": "c", "type": "command"}),
            "a command needs data.command, a non-empty string",
        ),
        (
            json!({"channel": "c", "type": "command", "data": {"command": "onSubscribe"}}),
            "command name \"onSubscribe\" is reserved",
        ),
        (
            json!({"to": "", "data": 1}),
            "\"to\" must be a non-empty identity",
        ),
        (
            json!({"to": 5, "data": 1}),
            "\"to\" must be a non-empty identity",
        ),
        (
            json!({"to": "a\tb"}),
            "identity contains control characters",
        ),
    ];
    for (body, text) in cases {
        assert_eq!(refusal(body), (400, text.to_owned()));
    }
}

#[test]
fn statuses() {
    let refused = ApiError::Refused(ApiRefusal {
        status: StatusCode::UNAUTHORIZED,
        message: "missing API key",
    });
    let res = refused.into_response();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let res = ApiError::MethodNotAllowed("GET, HEAD").into_response();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()[header::ALLOW], "GET, HEAD");
    assert_eq!(
        ApiError::TooLarge(9).status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(ApiError::BodyTimeout.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(ApiError::NotFound.status(), StatusCode::NOT_FOUND);
    assert_eq!(ApiError::ChannelNotUtf8.status(), StatusCode::BAD_REQUEST);
}
