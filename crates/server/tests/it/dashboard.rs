//! The dashboard is served from the binary: its page and every asset the page names.

use crate::util::*;

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let t = start_hub().await;
    let page = http().get(format!("{}/", t.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<div id="root">"#), "{html}");
    let assets: Vec<&str> = html
        .split('"')
        .filter(|s| s.starts_with("/assets/"))
        .collect();
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{html}");
    for asset in assets {
        let response = http()
            .get(format!("{}{asset}", t.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            kind.contains("javascript") || kind.contains("css"),
            "{asset}: {kind}"
        );
        assert!(!response.bytes().await.unwrap().is_empty());
    }
    let missing = http()
        .get(format!("{}/assets/nope.js", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
