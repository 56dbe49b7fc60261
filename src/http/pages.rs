//! The form page's templates: `templates/http/<locale>/{support,confirmation,no_account}.hbs`
//! (HTML, Handlebars with escaping on and strict mode), `templates/http/support.css` and
//! `support.js`. Admins edit them like the mail templates; a set is rendered with sample data
//! before it is accepted, at start and on SIGHUP, and a broken edit keeps the last good set.

use std::path::{Path, PathBuf};

use handlebars::Handlebars;
use serde::Serialize;

use super::request::{MAX_CHARS, MIN_CHARS};
use crate::reply::{ReplyError, describe_render_error, register_locales, strict_registry};

/// The pages every locale folder must provide, without `.hbs`.
const PAGE_NAMES: [&str; 3] = ["support", "confirmation", "no_account"];

/// The form page and what its two forms need to come back.
#[derive(Debug, Clone, Serialize)]
pub struct FormPage {
    pub lang: String,
    /// From the signed link: the customer's address and name (may be empty).
    pub email: String,
    pub name: String,
    /// The signed link's token, sent back with the form.
    pub account_token: String,
    pub csrf: String,
    /// The category id chosen, or empty.
    pub category: String,
    /// The text as typed, kept when the page comes back with errors.
    pub message: String,
    pub errors: PageErrors,
    pub min_chars: usize,
    pub max_chars: usize,
    pub support_address: String,
    pub support_name: String,
}

/// Error texts next to their field; empty when there is none.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PageErrors {
    pub category: String,
    pub message: String,
    /// Not about one field: an expired form, a limit, the database away.
    pub general: String,
}

/// The confirmation screen.
#[derive(Debug, Clone, Serialize)]
pub struct ConfirmationPage {
    pub lang: String,
    pub ticket: String,
    /// The category's label in the page's language.
    pub category: String,
    pub promise: String,
    /// The due time worded in the page's language, or empty.
    pub due: String,
    pub email: String,
    /// Whether the confirmation e-mail was queued.
    pub acknowledged: bool,
    pub support_address: String,
    pub support_name: String,
}

/// The page for a visitor without a valid link.
#[derive(Debug, Clone, Serialize)]
pub struct NoAccountPage {
    pub lang: String,
    /// `missing`, `expired` or `invalid`.
    pub reason: &'static str,
    pub support_address: String,
    pub support_name: String,
}

/// The loaded pages.
pub struct Pages {
    registry: Handlebars<'static>,
    /// Folder names, sorted.
    locales: Vec<String>,
    pub css: String,
    pub js: String,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("locales", &self.locales)
            .finish_non_exhaustive()
    }
}

impl Pages {
    /// Loads `dir` (`templates/http`): every locale folder with its three pages, and the
    /// stylesheet and script beside them.
    ///
    /// # Errors
    /// A missing or unreadable file, a template that does not parse or fails on sample data,
    /// with its path and line.
    pub fn load(dir: &Path) -> Result<Pages, ReplyError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| ReplyError::Io { path, error }
        };
        // Escaping stays on: nothing the customer typed may become markup.
        let mut registry = strict_registry();
        let locales = register_locales(&mut registry, dir, &PAGE_NAMES)?;
        let read = |name: &str| -> Result<String, ReplyError> {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(io(&path))
        };
        let pages = Pages {
            registry,
            locales,
            css: read("support.css")?,
            js: read("support.js")?,
        };
        pages.validate(dir)?;
        Ok(pages)
    }

    /// The page locale for a visitor: `wanted` (`?lang=`), else the best of `accept_language`
    /// (RFC 9110 §12.5.4, by quality), else `default`, else English, else the first.
    pub fn locale(
        &self,
        wanted: Option<&str>,
        accept_language: Option<&str>,
        default: &str,
    ) -> String {
        let find = |tag: &str| {
            let primary = tag.trim().split(['-', '_']).next().unwrap_or("");
            self.locales
                .iter()
                .find(|l| l.eq_ignore_ascii_case(tag.trim()) || l.eq_ignore_ascii_case(primary))
                .cloned()
        };
        if let Some(found) = wanted.and_then(find) {
            return found;
        }
        let mut ranked: Vec<(f32, &str)> = accept_language
            .unwrap_or("")
            .split(',')
            .filter_map(|item| {
                let mut parts = item.split(';');
                let tag = parts.next()?.trim();
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                (!tag.is_empty() && tag != "*" && q > 0.0).then_some((q, tag))
            })
            .collect();
        // Stable: equal qualities keep the visitor's order.
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranked
            .into_iter()
            .find_map(|(_, tag)| find(tag))
            .or_else(|| find(default))
            .or_else(|| find("en"))
            .unwrap_or_else(|| self.locales[0].clone())
    }

    /// Renders page `name` (`support`, `confirmation`, `no_account`) in `locale`.
    ///
    /// # Errors
    /// The template fails on these values (an admin's edit that sample data did not reach).
    pub fn render<T: Serialize>(
        &self,
        locale: &str,
        name: &str,
        ctx: &T,
    ) -> Result<String, ReplyError> {
        self.registry
            .render(&format!("{locale}/{name}"), ctx)
            .map_err(|e| ReplyError::Render {
                template: format!("http/{locale}/{name}.hbs"),
                reason: describe_render_error(&e),
            })
    }

    /// Renders every page with data that opens its conditional sections and with data that
    /// closes them, so strict mode sees every variable a page mentions.
    fn validate(&self, dir: &Path) -> Result<(), ReplyError> {
        for locale in &self.locales {
            for full in [true, false] {
                let form = sample_form(locale, full);
                let confirmation = ConfirmationPage {
                    lang: locale.clone(),
                    ticket: "CHT-1".into(),
                    category: "Facturation".into(),
                    promise: "sous 24 heures".into(),
                    due: if full {
                        "mercredi 25 novembre 2026 à 14:30".into()
                    } else {
                        String::new()
                    },
                    email: "julie@example.test".into(),
                    acknowledged: full,
                    support_address: "support@example.test".into(),
                    support_name: "Support".into(),
                };
                let checks: [(&str, Result<String, handlebars::RenderError>); 4] = [
                    (
                        "support",
                        self.registry.render(&format!("{locale}/support"), &form),
                    ),
                    (
                        "confirmation",
                        self.registry
                            .render(&format!("{locale}/confirmation"), &confirmation),
                    ),
                    (
                        "no_account",
                        self.registry.render(
                            &format!("{locale}/no_account"),
                            &NoAccountPage {
                                lang: locale.clone(),
                                reason: if full { "expired" } else { "missing" },
                                support_address: "support@example.test".into(),
                                support_name: "Support".into(),
                            },
                        ),
                    ),
                    (
                        "no_account",
                        self.registry.render(
                            &format!("{locale}/no_account"),
                            &NoAccountPage {
                                lang: locale.clone(),
                                reason: "invalid",
                                support_address: "support@example.test".into(),
                                support_name: "Support".into(),
                            },
                        ),
                    ),
                ];
                for (name, result) in checks {
                    result.map_err(|e| ReplyError::Template {
                        path: page_path(dir, locale, name),
                        reason: describe_render_error(&e),
                    })?;
                }
            }
        }
        Ok(())
    }
}

fn page_path(dir: &Path, locale: &str, name: &str) -> PathBuf {
    dir.join(locale).join(format!("{name}.hbs"))
}

fn sample_form(locale: &str, full: bool) -> FormPage {
    let error = |text: &str| {
        if full {
            text.to_string()
        } else {
            String::new()
        }
    };
    FormPage {
        lang: locale.to_string(),
        email: "julie@example.test".into(),
        name: if full {
            "Julie Martin".into()
        } else {
            String::new()
        },
        account_token: "token".into(),
        csrf: "csrf".into(),
        category: if full {
            "billing".into()
        } else {
            String::new()
        },
        message: if full {
            "Le widget <b>ne</b> s'affiche plus".into()
        } else {
            String::new()
        },
        errors: PageErrors {
            category: error("Choisissez une catégorie."),
            message: error("Trop court."),
            general: error("Réessayez."),
        },
        min_chars: MIN_CHARS,
        max_chars: MAX_CHARS,
        support_address: "support@example.test".into(),
        support_name: "Support".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Pages {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/http");
        Pages::load(&dir).unwrap_or_else(|e| panic!("shipped pages must load: {e}"))
    }

    #[test]
    fn the_page_language_comes_from_the_link_then_the_browser_then_the_default() {
        let pages = shipped();
        assert_eq!(pages.locale(Some("en"), Some("fr-FR,fr;q=0.9"), "fr"), "en");
        assert_eq!(
            pages.locale(Some("xx"), Some("de;q=1, en-GB;q=0.8, fr;q=0.9"), "fr"),
            "fr"
        );
        assert_eq!(pages.locale(None, Some("en-US,en;q=0.5"), "fr"), "en");
        assert_eq!(pages.locale(None, Some("de, *;q=0.1"), "fr"), "fr");
        assert_eq!(pages.locale(None, None, "de"), "en");
    }

    #[test]
    fn what_the_customer_typed_is_escaped_on_every_page() {
        let pages = shipped();
        let mut form = sample_form("fr", true);
        form.message = "</textarea><script>alert(1)</script>".into();
        form.name = "<img src=x onerror=alert(1)>".into();
        let html = pages.render("fr", "support", &form).unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(html.contains("&lt;/textarea&gt;&lt;script&gt;"), "{html}");
        // The errors show next to their fields, and the choice is kept.
        assert!(html.contains("Trop court."));
        assert!(html.contains("value=\"billing\" checked"), "{html}");
    }

    #[test]
    fn a_broken_page_is_refused_with_its_file_and_line() {
        let shipped_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/http");
        let dir = tempfile::tempdir().unwrap();
        for entry in ["support.css", "support.js"] {
            std::fs::copy(shipped_dir.join(entry), dir.path().join(entry)).unwrap();
        }
        std::fs::create_dir(dir.path().join("fr")).unwrap();
        for name in PAGE_NAMES {
            std::fs::copy(
                shipped_dir.join("fr").join(format!("{name}.hbs")),
                dir.path().join("fr").join(format!("{name}.hbs")),
            )
            .unwrap();
        }
        assert!(Pages::load(dir.path()).is_ok());
        std::fs::write(dir.path().join("fr/confirmation.hbs"), "<p>{{tiket}}</p>\n").unwrap();
        let err = Pages::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("confirmation.hbs"), "{err}");
        assert!(err.contains("tiket"), "{err}");
    }
}
