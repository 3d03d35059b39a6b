//! The two HTML pages a browser can see: the consent page and the error page.
//!
//! They are deliberately plain: tests drive them with an HTTP client (find the
//! form, post it), and people running a demo click the buttons.

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}code{background:#f3f3f3;padding:0 .2rem}\
button{font-size:1rem;padding:.5rem 1.4rem;margin-right:.6rem;border-radius:.3rem;border:1px solid #0b5cff;cursor:pointer}\
.approve{background:#0b5cff;color:#fff}.deny{background:#fff;color:#0b5cff}.note{color:#666;font-size:.85rem}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n",
        escape(title)
    )
}

/// The consent page. The form carries only the server-side pending-request id;
/// the code is minted when the decision is posted, as on Zoom.
pub fn consent_page(
    request_id: &str,
    app_name: &str,
    scopes: &[String],
    redirect_uri: &str,
    user_email: &str,
) -> String {
    let scope_items: String = scopes
        .iter()
        .map(|s| format!("<li><code>{}</code></li>", escape(s)))
        .collect();
    let body = format!(
        "<h1>{app} would like to access your Zoom account</h1>\n\
<p>Signed in as <code>{user}</code>.</p>\n\
<p>It is asking for these scopes:</p>\n<ul>{scope_items}</ul>\n\
<form method=\"post\" action=\"/oauth/authorize/decision\">\n\
<input type=\"hidden\" name=\"request_id\" value=\"{id}\">\n\
<button class=\"approve\" type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\n\
<button class=\"deny\" type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>\n\
</form>\n<p class=\"note\">zoom-sim will send you back to <code>{redirect}</code>.</p>",
        app = escape(app_name),
        id = escape(request_id),
        redirect = escape(redirect_uri),
        user = escape(user_email),
    );
    page(&format!("Authorize {app_name} - zoom-sim"), &body)
}

/// An authorize-flow error that cannot be sent back to the client.
pub fn error_page(message: &str) -> String {
    page(
        "Authorization error - zoom-sim",
        &format!("<h1>Authorization error</h1>\n<p>{}</p>", escape(message)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn consent_page_posts_the_request_id() {
        let html = consent_page(
            "req123",
            "<My App>",
            &["user:read:user".to_owned()],
            "https://c.example/cb",
            "a&b@example.com",
        );
        assert!(html.contains(r#"name="request_id" value="req123""#));
        assert!(html.contains("Signed in as <code>a&amp;b@example.com</code>"));
        assert!(html.contains("&lt;My App&gt;"));
        assert!(html.contains(r#"action="/oauth/authorize/decision""#));
    }
}
