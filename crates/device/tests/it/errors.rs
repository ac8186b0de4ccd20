use sovereign_device::{Behaviour, CloudTarget, DeviceError, Phone, PhoneOptions, PhoneProfile};

use crate::support::*;

#[tokio::test]
async fn an_unreachable_cloud_is_named_at_the_first_step_that_needs_it() {
    // Bind and drop a listener: nothing listens on that port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cloud = spawn_cloud().await;
    let mut options = cloud.options("in-mumbai");
    if let Some(target) = options.cloud.as_mut() {
        target.url = format!("https://127.0.0.1:{port}");
    }
    let err = sovereign_device::run(profile(), options).await.unwrap_err();
    let DeviceError::Step { step, cause } = &err else {
        panic!("{err}");
    };
    assert_eq!(step, "sign-in");
    assert!(matches!(**cause, DeviceError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("cannot reach"), "{err}");
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_cloud_is_a_tls_error() {
    let cloud = spawn_cloud().await;
    let (other, _) = sovereign_crypto::LocalCa::generate("someone else").unwrap();
    let mut options = cloud.options("in-mumbai");
    options.cloud = Some(CloudTarget {
        url: cloud.url("in-mumbai"),
        ca_pem: other.cert_pem().as_bytes().to_vec(),
        ca_origin: "other-ca.pem".into(),
    });
    let err = sovereign_device::run(profile(), options).await.unwrap_err();
    let DeviceError::Step { cause, .. } = &err else {
        panic!("{err}");
    };
    assert!(matches!(**cause, DeviceError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(cloud.users_in("in-mumbai"), 0);
}

#[tokio::test]
async fn missing_inputs_and_bad_values_are_clear_errors() {
    let err = Phone::new(profile(), PhoneOptions::new(Behaviour::Sovereign))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("--cloud"), "{err}");

    let cloud = spawn_cloud().await;
    let mut options = cloud.options("in-mumbai");
    options.sms_outbox = None;
    let err = Phone::new(profile(), options).await.err().unwrap();
    assert!(err.to_string().contains("--sms-outbox"), "{err}");

    let mut options = cloud.options("in-mumbai");
    if let Some(target) = options.cloud.as_mut() {
        target.url = target.url.replace("https://", "http://");
    }
    let err = Phone::new(profile(), options).await.err().unwrap();
    assert!(
        err.to_string().contains("only spoken to over https"),
        "{err}"
    );

    let mut options = cloud.options("in-mumbai");
    if let Some(target) = options.cloud.as_mut() {
        target.ca_pem = b"not a certificate".to_vec();
    }
    let err = Phone::new(profile(), options).await.err().unwrap();
    assert!(matches!(err, DeviceError::Ca { .. }), "{err}");

    let mut options = cloud.options("in-mumbai");
    options.key_log = Some(cloud.dir.path().join("no/such/dir/keys.log"));
    let err = Phone::new(profile(), options).await.err().unwrap();
    assert!(matches!(err, DeviceError::KeyLog { .. }), "{err}");

    // An outbox that never gets the code: the cloud writes elsewhere.
    let mut options = cloud.options("in-mumbai");
    let elsewhere = cloud.dir.path().join("other-outbox.jsonl");
    std::fs::write(&elsewhere, "").unwrap();
    options.sms_outbox = Some(elsewhere);
    let err = sovereign_device::run(profile(), options).await.unwrap_err();
    assert!(
        err.to_string().contains("no code for +919876543210"),
        "{err}"
    );

    assert!(Behaviour::parse("android").is_err());
    assert!(sovereign_device::BackupKind::parse("calendar").is_err());
}

#[test]
fn bad_profiles_are_refused_with_the_reason() {
    let cases = [
        (
            "[device]\nhome_country = \"IN\"\n[identifiers]\nimie = \"1\"\n",
            "imie",
        ),
        (
            "[device]\nhome_country = \"IN\"\n[identifiers]\nimei = \"1\"\n",
            "phone is required",
        ),
        (
            "[device]\nhome_country = \"IN\"\n[identifiers]\nphone = \"98765 43210\"\n",
            "international format",
        ),
        ("not toml at all [", "p.toml"),
    ];
    for (text, expected) in cases {
        let err = PhoneProfile::from_toml(text, "p.toml").unwrap_err();
        assert!(err.to_string().contains(expected), "{expected}: {err}");
    }
    let err = PhoneProfile::load("/no/such/profile.toml".as_ref()).unwrap_err();
    assert!(err.to_string().contains("/no/such/profile.toml"), "{err}");
}
