use std::collections::BTreeSet;

use sovereign_device::client::{BackupKind, CloudClient, TlsSettings};
use sovereign_device::{Phone, Step, run};
use sovereign_model::IdentifierKind;

use crate::support::*;

/// A client of the home region for checking what the cloud holds, as the user would.
async fn check_client(cloud: &TestCloud) -> (CloudClient, sovereign_device::client::Session) {
    let tls = TlsSettings::from_files(&cloud.ca_path(), None).unwrap();
    let client = CloudClient::new(&cloud.url("in-mumbai"), &tls).unwrap();
    let phone = profile().phone().to_owned();
    let session = client
        .sign_in(&phone, sovereign_device::sim::PASSWORD_DEFAULT, "checker")
        .await
        .unwrap();
    (client, session)
}

#[tokio::test]
async fn sovereign_sends_nothing_before_consent_and_never_a_hardware_identifier() {
    let cloud = spawn_cloud().await;
    let key_log = cloud.dir.path().join("keys.log");
    let mut options = cloud.options("in-mumbai");
    options.key_log = Some(key_log.clone());
    let report = run(profile(), options).await.unwrap();

    // Nothing at all before the user signs in: carrier steps stay on the phone.
    let sign_in = report
        .steps
        .iter()
        .position(|s| s.step == Step::SignIn)
        .unwrap();
    assert_eq!(sign_in, 11);
    for step in &report.steps[..sign_in] {
        assert!(
            step.nothing_sent(),
            "{} sent {:?}",
            step.step,
            step.requests
        );
    }
    // Nor after the update, with contacts and SMS backup off.
    for step in &report.steps[sign_in + 3..] {
        assert!(
            step.nothing_sent(),
            "{} sent {:?}",
            step.step,
            step.requests
        );
    }

    // Every request: TLS, to the home region, carrying at most the user's own number.
    let home = cloud.url("in-mumbai");
    let requests: Vec<_> = report.requests().collect();
    assert!(requests.len() >= 10, "{requests:?}");
    for request in &requests {
        assert!(request.tls, "{}", request.url);
        assert!(
            request.url.starts_with(&home),
            "{} is not {home}",
            request.url
        );
        for carried in &request.identifiers {
            assert_eq!(
                carried.kind,
                IdentifierKind::Phone,
                "{}: {carried:?}",
                request.url
            );
        }
    }
    // The phone number goes only in the sign-up, sign-in and the note to self.
    let with_phone: BTreeSet<&str> = requests
        .iter()
        .filter(|r| !r.identifiers.is_empty())
        .map(|r| r.url.strip_prefix(&home).unwrap())
        .collect();
    assert_eq!(
        with_phone,
        BTreeSet::from(["/v1/accounts", "/v1/sessions", "/v1/messages"])
    );

    // No IMEI, IMSI or ICCID in any request, in any encoding.
    for request in &requests {
        for (kind, value) in hardware_ids() {
            for pattern in encodings(&value) {
                assert!(
                    !contains(&request.sent, &pattern),
                    "{kind} as {:?} in {}",
                    String::from_utf8_lossy(&pattern),
                    request.url
                );
            }
        }
    }

    // The cloud's side: the account only in the home region, the consents given, a photo kept,
    // no contacts or SMS.
    assert_eq!(report.region.as_deref(), Some("in-mumbai"));
    for region in cloud.regions() {
        let expected = i64::from(region == "in-mumbai");
        assert_eq!(cloud.users_in(&region), expected, "{region}");
    }
    let (client, session) = check_client(&cloud).await;
    let granted: BTreeSet<String> = client
        .consents(&session)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.granted)
        .map(|c| c.scope)
        .collect();
    assert_eq!(
        granted,
        BTreeSet::from(["messaging".to_owned(), "backup.photos".to_owned()])
    );
    let photos = client
        .backup_changes(&session, BackupKind::Photos, None)
        .await
        .unwrap();
    assert_eq!(photos.items.len(), 1);
    let sent = client.messages(&session, None).await.unwrap();
    assert_eq!(sent.messages.len(), 1, "the note to self");
    assert_eq!(sent.messages[0].from.as_deref(), Some(profile().phone()));
    assert!(sent.messages[0].delivered_at.is_some(), "acknowledged");
    for kind in [BackupKind::Contacts, BackupKind::Sms] {
        let page = client.backup_changes(&session, kind, None).await.unwrap();
        assert!(page.items.is_empty(), "{kind:?}");
    }
    let contact = sovereign_device::client::ContactRecord {
        name: "n".into(),
        phones: vec![],
    };
    let refused = client
        .put_contact(&session, "x", &contact)
        .await
        .unwrap_err();
    assert_eq!(refused.api_code(), Some("consent_required"), "{refused}");

    // The step output says what was chosen.
    let backup = report
        .steps
        .iter()
        .find(|s| s.step == Step::BackupOn)
        .unwrap();
    assert!(
        backup.summary.contains("uploaded 1 photo to in-mumbai"),
        "{}",
        backup.summary
    );
    assert!(
        backup.summary.contains("contacts and sms backup stays off"),
        "{}",
        backup.summary
    );

    assert_key_log_well_formed(&key_log);
}

#[tokio::test]
async fn a_sign_up_at_another_region_is_redirected_home_and_the_phone_stays_there() {
    let cloud = spawn_cloud().await;
    let report = run(profile(), cloud.options("us-oregon")).await.unwrap();
    let oregon = cloud.url("us-oregon");
    let home = cloud.url("in-mumbai");
    let requests: Vec<_> = report.requests().collect();
    // One request reached Oregon, answered 307; the same sign-up then went home, and everything
    // after it too.
    assert!(requests[0].url.starts_with(&oregon), "{}", requests[0].url);
    assert_eq!(requests[0].status, Some(307));
    assert_eq!(requests[1].url, format!("{home}/v1/accounts"));
    assert_eq!(requests[1].method, "POST");
    assert_eq!(
        requests[1].sent.split(|b| *b == b'\n').next_back(),
        requests[0].sent.split(|b| *b == b'\n').next_back(),
        "same body"
    );
    assert!(requests[1..].iter().all(|r| r.url.starts_with(&home)));
    assert_eq!(report.home_url.as_deref(), Some(home.as_str()));
    assert_eq!(cloud.users_in("in-mumbai"), 1);
    assert_eq!(cloud.users_in("us-oregon"), 0);
}

#[tokio::test]
async fn opted_in_contacts_and_sms_go_to_the_home_region_only() {
    let cloud = spawn_cloud().await;
    let mut options = cloud.options("in-mumbai");
    options.backup = BackupKind::ALL.into_iter().collect();
    let mut phone = Phone::new(profile(), options).await.unwrap();
    let report = phone.run_procedure().await.unwrap();

    let home = cloud.url("in-mumbai");
    for request in report.requests() {
        assert!(
            request.tls && request.url.starts_with(&home),
            "{}",
            request.url
        );
        for (kind, value) in hardware_ids() {
            for pattern in encodings(&value) {
                assert!(
                    !contains(&request.sent, &pattern),
                    "{kind} in {}",
                    request.url
                );
            }
        }
    }
    // Still nothing before sign-in.
    assert!(report.steps[..11].iter().all(|s| s.nothing_sent()));
    let backup = report
        .steps
        .iter()
        .find(|s| s.step == Step::BackupOn)
        .unwrap();
    assert!(
        backup
            .summary
            .contains("contact(s), names and numbers, to in-mumbai (opted in)"),
        "{}",
        backup.summary
    );
    assert!(
        backup
            .summary
            .contains("SMS, numbers and texts, to in-mumbai (opted in)"),
        "{}",
        backup.summary
    );
    // After the update, the new contact and the new texts are synced as they happen.
    let after: Vec<_> = report.steps[15..].iter().collect();
    assert_eq!(after[0].step, Step::AddContact);
    assert_eq!(after[0].requests.len(), 1);
    assert!(
        after[0].summary.contains("in-mumbai over TLS (opted in)"),
        "{}",
        after[0].summary
    );
    assert!(
        after[0].requests[0]
            .identifiers
            .iter()
            .any(|c| c.kind == IdentifierKind::Contact)
    );

    let (client, session) = check_client(&cloud).await;
    let contacts = client
        .backup_changes(&session, BackupKind::Contacts, None)
        .await
        .unwrap();
    assert_eq!(
        contacts.items.len(),
        2,
        "one before backup-on, one after the update"
    );
    let sms = client
        .backup_changes(&session, BackupKind::Sms, None)
        .await
        .unwrap();
    assert_eq!(
        sms.items.len(),
        4,
        "two texts before backup-on, two after the update"
    );
    for region in cloud.regions() {
        assert_eq!(
            cloud.users_in(&region),
            i64::from(region == "in-mumbai"),
            "{region}"
        );
    }
}

/// Issue 10, item 5: `bench/latency.sh` runs the procedure again for a user who already has an
/// account (after each migration) and reads each request's time.
#[tokio::test]
async fn a_phone_with_an_account_only_signs_in_and_every_request_is_timed_issue_10() {
    let cloud = spawn_cloud().await;
    run(profile(), cloud.options("in-mumbai")).await.unwrap();
    let mut options = cloud.options("in-mumbai");
    options.existing_account = true;
    let report = run(profile(), options.clone()).await.unwrap();
    let requests: Vec<_> = report.requests().collect();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| !r.url.ends_with("/v1/accounts") && !r.url.ends_with("/v1/accounts/verify")),
        "signed up again"
    );
    assert_eq!(
        requests[0].url,
        format!("{}/v1/sessions", cloud.url("in-mumbai"))
    );
    assert!(
        requests
            .iter()
            .all(|r| r.elapsed_ms.is_some_and(|ms| ms >= 0.0))
    );
    assert_eq!(cloud.users_in("in-mumbai"), 1);
    // Nor does it need the SMS gateway.
    options.sms_outbox = None;
    run(profile(), options).await.unwrap();
}
