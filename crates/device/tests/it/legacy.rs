use base64::Engine;
use sovereign_device::{Behaviour, LEGACY_HOST, LegacyEndpoint, Phone, PhoneOptions, Step};
use sovereign_model::IdentifierKind;

use crate::support::*;

fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn decoded(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    let data = value["data"].as_str().unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn legacy_2014_reproduces_what_the_investigation_found() {
    let endpoint = LegacyEndpoint::start(loopback(), loopback()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_log = dir.path().join("keys.log");
    let mut options = PhoneOptions::new(Behaviour::Legacy2014);
    options.legacy = Some(endpoint.target());
    options.key_log = Some(key_log.clone());
    let mut phone = Phone::new(profile(), options).await.unwrap();
    assert!(phone.own_legacy_endpoint().is_none());
    let report = phone.run_procedure().await.unwrap();

    let p = profile();
    let ids = &p.profile().identifiers;
    let (imei, imsi, carrier) = (
        ids.imei.clone().unwrap(),
        ids.imsi.clone().unwrap(),
        ids.carrier.clone().unwrap(),
    );
    let phone_number = p.phone().to_owned();
    let contacts: Vec<String> = p
        .owner_data()
        .contacts
        .iter()
        .map(|c| c.phone.clone())
        .collect();

    // What the endpoint received, one record per request the phone reports, in order.
    let received = endpoint.records();
    let requests: Vec<_> = report.requests().collect();
    assert_eq!(received.len(), requests.len());
    for record in &received {
        assert!(record.host.starts_with(LEGACY_HOST), "{}", record.host);
    }

    // At first boot, before any consent: carrier, IMEI and number, in cleartext HTTP.
    let first = &received[0];
    assert!(!first.tls);
    assert_eq!(report.steps[0].step, Step::FirstBoot);
    assert_eq!(report.steps[0].requests.len(), 1);
    for value in [&imei, &carrier, &phone_number] {
        assert!(
            first.body.contains(value.as_str()),
            "{value} not in {}",
            first.body
        );
    }
    assert!(!first.body.contains(&imsi));

    // The IMSI only from sign-in on.
    let sign_in_at: usize = report
        .steps
        .iter()
        .take_while(|s| s.step != Step::SignIn)
        .map(|s| s.requests.len())
        .sum();
    for record in &received[..sign_in_at] {
        assert!(
            !record.body.contains(&imsi),
            "IMSI before sign-in: {}",
            record.body
        );
    }
    assert!(received[sign_in_at].body.contains(&imsi));
    assert!(received[sign_in_at].path.contains("login"));

    // Contacts' numbers, and the numbers of SMS, MMS and calls, as they happen.
    let before_update = &report.steps[..15];
    for step in before_update {
        let carries_contact = step.requests.iter().any(|r| {
            r.identifiers
                .iter()
                .any(|c| c.kind == IdentifierKind::Contact)
        });
        let expected = matches!(
            step.step,
            Step::AddContact
                | Step::SendSms
                | Step::ReceiveSms
                | Step::SendMms
                | Step::ReceiveMms
                | Step::MakeCall
                | Step::ReceiveCall
                | Step::BackupOn
        );
        assert_eq!(carries_contact, expected, "{}", step.step);
    }
    let call = received.iter().find(|r| r.path.contains("call")).unwrap();
    assert!(
        contacts.iter().any(|c| call.body.contains(c.as_str())),
        "{}",
        call.body
    );

    // Up to the update in cleartext; after it, the same data base64-encoded inside HTTPS.
    let update_at = report
        .steps
        .iter()
        .position(|s| s.step == Step::Update)
        .unwrap();
    let cut: usize = report.steps[..=update_at]
        .iter()
        .map(|s| s.requests.len())
        .sum();
    assert!(received[..cut].iter().all(|r| !r.tls));
    let after = &received[cut..];
    assert_eq!(after.len(), 7);
    for record in after {
        assert!(record.tls, "{}", record.path);
        assert!(
            !record.body.contains(&imei),
            "IMEI in the clear after the update"
        );
        // The check the sovereign tests rely on finds the IMEI in this encoding.
        assert!(
            encodings(&imei)
                .iter()
                .any(|pattern| contains(record.body.as_bytes(), pattern)),
            "{}",
            record.body
        );
        let inner = decoded(&record.body);
        for value in [&imei, &imsi, &carrier, &phone_number] {
            assert!(inner.contains(value.as_str()), "{value} not in {inner}");
        }
    }
    for step in &report.steps[update_at + 1..] {
        let request = &step.requests[0];
        assert!(request.tls);
        assert!(request.url.starts_with(&format!("https://{LEGACY_HOST}:")));
        assert!(
            request
                .identifiers
                .iter()
                .any(|c| c.kind == IdentifierKind::Imei
                    && c.encoding == sovereign_device::Encoding::Base64)
        );
    }

    // The HTTPS session's secrets are in the key log.
    assert_key_log_well_formed(&key_log);
}

#[tokio::test]
async fn legacy_2014_without_an_endpoint_starts_its_own() {
    let report = sovereign_device::run(profile(), PhoneOptions::new(Behaviour::Legacy2014))
        .await
        .unwrap();
    let endpoint = report.legacy_endpoint.as_ref().unwrap();
    assert_eq!(endpoint.received.len(), report.requests().count());
    assert_eq!(report.region.as_deref(), Some("cn-beijing"));
    let text = sovereign_device::render_text(&report);
    assert!(text.contains("1. first-boot"), "{text}");
    assert!(text.contains("carries imei (plain)"), "{text}");
    assert!(text.contains("-- after the update --"), "{text}");
    assert!(text.contains("imei (base64)"), "{text}");
    assert!(text.contains("nothing sent"), "allow-location: {text}");
}
