//! Communities against wamock: a group linked to a community (wamock's `linked_parent`),
//! listed as its sub-group (whatsapp-rust's GraphQL query), unlinked again.

use serde_json::json;

use crate::groups::{create_group, error_of, wamock_group};
use crate::helpers::TestApp;
use crate::wa::{app_with_wamock, pair, user};

#[tokio::test]
async fn link_list_and_unlink_sub_groups() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("cm").await;
    pair(&app, &wa, "cm", "5511999996201").await;
    user(&wa, "5511988886201").await;
    let parent = create_group(&app, "cm", "Community", &["5511988886201"]).await["groupId"]
        .as_str()
        .unwrap()
        .to_string();
    let child = create_group(&app, "cm", "Sub group", &["5511988886201"]).await["groupId"]
        .as_str()
        .unwrap()
        .to_string();

    let empty = app
        .get_json(&format!("/cm/community/groups?communityId={parent}"))
        .await;
    assert_eq!(empty, json!({"groups": []}));

    // Link (0.2.8's `parentGroupId` spelling), then list.
    let (code, got) = TestApp::call(
        app.post("/cm/community/link")
            .json(&json!({"parentGroupId": parent, "childGroupId": child})),
    )
    .await;
    assert_eq!((code, got), (200, json!({})));
    let state = wamock_group(&wa, &child).await;
    assert_eq!(state["parent"], parent.as_str(), "{state}");
    assert_eq!(
        wamock_group(&wa, &parent).await["linkedGroups"],
        json!([child])
    );
    let bare = parent.trim_end_matches("@g.us");
    let listed = app
        .get_json(&format!("/cm/community/groups?communityId={bare}"))
        .await;
    let groups = listed["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{listed}");
    assert_eq!(groups[0]["JID"], child.as_str());
    assert_eq!(groups[0]["Name"], "Sub group");
    assert_eq!(groups[0]["IsDefaultSubGroup"], false);
    let info = app
        .get_json(&format!("/cm/group/info?groupId={child}"))
        .await;
    assert_eq!(info["data"]["LinkedParentJID"], parent.as_str(), "{info}");

    // Unlink (`communityId` spelling); unlinking again: 404.
    let body = json!({"communityId": parent, "childGroupId": child});
    let (code, got) = TestApp::call(app.post("/cm/community/unlink").json(&body)).await;
    assert_eq!((code, got), (200, json!({})));
    assert!(wamock_group(&wa, &child).await["parent"].is_null());
    let listed = app
        .get_json(&format!("/cm/community/groups?communityId={parent}"))
        .await;
    assert_eq!(listed, json!({"groups": []}));
    let (code, got) = TestApp::call(app.post("/cm/community/unlink").json(&body)).await;
    error_of(code, &got, 404, "not linked");

    // Bad input and unknown communities.
    let bad = [
        (
            app.get("/cm/community/groups"),
            "communityId query parameter is required",
        ),
        (
            app.get("/cm/community/groups?communityId=abc"),
            "communityId must be a group ID",
        ),
        (
            app.post("/cm/community/link")
                .json(&json!({"childGroupId": child})),
            "communityId",
        ),
        (
            app.post("/cm/community/link")
                .json(&json!({"communityId": parent})),
            "childGroupId",
        ),
        (
            app.post("/cm/community/link")
                .json(&json!({"communityId": parent, "childGroupId": "x@s.whatsapp.net"})),
            "childGroupId must be a group ID",
        ),
        (
            app.post("/cm/community/link")
                .json(&json!({"communityId": parent, "childGroupId": parent})),
            "childGroupId must differ",
        ),
    ];
    for (req, needle) in bad {
        let (code, got) = TestApp::call(req).await;
        error_of(code, &got, 400, needle);
    }
    let unknown = "120363999999999998@g.us";
    let (code, got) =
        TestApp::call(app.get(&format!("/cm/community/groups?communityId={unknown}"))).await;
    error_of(code, &got, 404, "group not found");
    let (code, got) = TestApp::call(
        app.post("/cm/community/link")
            .json(&json!({"communityId": unknown, "childGroupId": child})),
    )
    .await;
    error_of(code, &got, 404, "group not found");
}
