//! The console's page shell (head, navigation, the CSRF `<meta>`) and small pieces the
//! pages share. Every value goes through maud, which escapes it.

use axum::response::Html;
use maud::{DOCTYPE, Markup, html};

use super::session::Session;

/// The pages in the navigation: path and title.
const NAV: [(&str, &str); 6] = [
    ("/ui", "Overview"),
    ("/ui/subscriptions", "Subscriptions"),
    ("/ui/dead-letters", "Dead letters"),
    ("/ui/endpoints", "Endpoints"),
    ("/ui/plugins", "Plugins"),
    ("/ui/tail", "Live tail"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · wasmhook" }
            link rel="icon" href="/ui/assets/favicon.svg" type="image/svg+xml";
            link rel="stylesheet" href="/ui/assets/console.css";
            script src="/ui/assets/console.js" defer {}
        }
    }
}

/// A page without navigation (sign-in).
pub fn bare(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body { (body) }
            }
        }
        .into_string(),
    )
}

/// A signed-in page: navigation with `current` marked, the CSRF token for the script, and
/// a sign-out button.
pub fn page(session: &Session, current: &str, title: &str, body: Markup) -> Html<String> {
    Html(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                meta name="csrf-token" content=(session.csrf);
                nav {
                    span.brand { "wasmhook" }
                    @for (path, name) in NAV {
                        a href=(path) aria-current=[(path == current).then_some("page")] { (name) }
                    }
                    button #logout type="button" { "Sign out" }
                }
                main {
                    h1 { (title) }
                    div #flash role="status" hidden {}
                    (body)
                }
            }
        }
    }.into_string())
}

/// A delivery status as a coloured badge.
pub fn status(status: &str) -> Markup {
    html! { span class={"badge " (status)} { (status) } }
}

/// A share (0 to 1) as a percentage, or a dash.
pub fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "—".to_owned(), |s| format!("{:.1}%", s * 100.0))
}

/// An optional value, or a dash.
pub fn or_dash<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_the_shell_links_only_own_assets() {
        let session = Session::for_test("tok");
        let page = page(
            &session,
            "/ui",
            "<x>",
            html! { p { ("<script>alert(1)</script>") } },
        )
        .0;
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains(r#"<meta name="csrf-token" content="tok">"#));
        assert!(page.contains(r#"aria-current="page""#));
        assert!(
            !page.contains("<script>")
                || page.contains(r#"<script src="/ui/assets/console.js" defer>"#)
        );
        assert_eq!(percent(Some(0.5)), "50.0%");
        assert_eq!(percent(None), "—");
    }
}
