//! The README's coverage table is generated from the endpoint catalog; this test keeps it true.
//! `UPDATE_README=1 cargo test --test api readme` rewrites it.

use onwapp::http::catalog::{ENDPOINTS, Status};

const BEGIN: &str = "<!-- coverage:begin -->";
const END: &str = "<!-- coverage:end -->";

fn table() -> String {
    let count = |f: fn(&Status) -> bool| ENDPOINTS.iter().filter(|e| f(&e.status)).count();
    let done = count(|s| *s == Status::Done);
    let partial = count(|s| matches!(s, Status::Partial(_)));
    let mut t = format!(
        "{done} of {} endpoints are built and {partial} are served with a stated limit; the others \
         answer `501 {{\"error\": \"not implemented\"}}` after authentication and session lookup.\n\n\
         | Section | Method | Path | State |\n|---|---|---|---|\n",
        ENDPOINTS.len()
    );
    for e in ENDPOINTS {
        let state = match e.status {
            Status::Done => "done".to_string(),
            Status::Partial(note) => format!("partial: {note}"),
            Status::NotImplemented => "missing (501)".to_string(),
        };
        t.push_str(&format!(
            "| {} | {} | `{}` | {} |\n",
            e.section, e.method, e.path, state
        ));
    }
    t
}

#[test]
fn readme_coverage_table_matches_the_catalog() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let (Some(b), Some(e)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md lacks the {BEGIN} ... {END} markers");
    };
    let current = &readme[b + BEGIN.len()..e];
    let wanted = format!("\n{}", table());
    if current != wanted {
        if std::env::var("UPDATE_README").is_ok_and(|v| v == "1") {
            let updated = format!("{}{BEGIN}{wanted}{}", &readme[..b], &readme[e..]);
            std::fs::write(path, updated).expect("write README.md");
        } else {
            panic!(
                "README coverage table is stale: run `UPDATE_README=1 cargo test --test api readme`"
            );
        }
    }
}
