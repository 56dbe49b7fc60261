use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::*;

const SUPPORT: &str = "support@chatim.app";

fn default_rules() -> &'static Classifier {
    static RULES: OnceLock<Classifier> = OnceLock::new();
    RULES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        Classifier::load_dir(&dir).unwrap_or_else(|e| panic!("default rules:\n{e}"))
    })
}

fn classify_to(subject: &str, body: &str, to: &[&str]) -> Classification {
    let to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
    let headers = vec![("subject".to_string(), subject.to_string())];
    default_rules().classify(
        &ClassifyInput {
            subject,
            body,
            from: "client@example.org",
            to: &to,
            headers: &headers,
        },
        SUPPORT,
    )
}

fn classify(subject: &str, body: &str) -> Classification {
    classify_to(subject, body, &[SUPPORT])
}

fn explain(c: &Classification) -> String {
    let mut out = format!(
        "-> {} (hint {:?}) scores {:?}\n",
        c.category, c.hint, c.scores
    );
    for m in &c.matches {
        out.push_str(&format!(
            "   {}/{} [{}] {:+} {:?}\n",
            m.category, m.rule, m.field, m.weight, m.matched
        ));
    }
    out
}

/// Realistic requests, French and English, with the category a support agent would pick.
const CORPUS: &[(&str, &str, &str)] = &[
    // Billing
    (
        "billing",
        "Facture du mois de mars",
        "Bonjour,\nPourriez-vous m'envoyer la facture de mars avec notre numéro de TVA intracommunautaire ?\nMerci,\nJulie",
    ),
    (
        "billing",
        "Prélèvement après résiliation",
        "Bonjour, j'ai résilié mon abonnement le 3 mai mais j'ai quand même été prélevé de 29 € le 5 mai. Pouvez-vous me rembourser ?",
    ),
    (
        "billing",
        "Charged twice this month",
        "Hi, my credit card was charged twice for the Pro plan this month. Can you refund the duplicate payment?",
    ),
    (
        "billing",
        "Upgrade",
        "Hello, how do I switch from the Starter plan to the Business plan? We need more agents.",
    ),
    (
        "billing",
        "carte refusée",
        "Ma carte bancaire a expiré et le paiement a été refusé. Comment mettre à jour mon moyen de paiement ?",
    ),
    (
        "billing",
        "Receipts",
        "Where can I download the receipts for our last three payments? Our accountant needs them.",
    ),
    (
        "billing",
        "Question",
        "Bonjour, vous avez débité mon compte bancaire deux fois pour l’abonnement, merci de vérifier.",
    ),
    (
        "billing",
        "Money taken",
        "You charged my account $49 even though we are on the free plan.",
    ),
    (
        "billing",
        "Résiliation",
        "Je souhaite résilier mon abonnement à la fin du mois.",
    ),
    (
        "billing",
        "Remboursement",
        "J'aimerais être remboursé de la dernière mensualité, je n'utilise plus le service.",
    ),
    (
        "billing",
        "Re: facture",
        "Erreur de facturation : on nous a facturé la formule Business au lieu de la formule Pro.",
    ),
    (
        "billing",
        "VAT on invoices",
        "Hi, please add our VAT number to the invoices on our account.",
    ),
    // Technical
    (
        "technical",
        "Le widget ne s'affiche plus",
        "Bonjour, depuis hier le widget ne s'affiche plus sur notre site (WordPress). J'ai vérifié le script, rien n'a changé. Navigateur : Chrome.",
    ),
    (
        "technical",
        "Chatbot",
        "Our chatbot flow stopped working after I added a new node, visitors get no answer.",
    ),
    (
        "technical",
        "Notifications",
        "Je ne reçois plus les notifications push sur mon ordinateur quand un visiteur écrit.",
    ),
    (
        "technical",
        "Erreur 500",
        "En appelant votre API pour créer un contact, on obtient une erreur 500 depuis ce matin.",
    ),
    (
        "technical",
        "Webhook not firing",
        "Hi team, our webhook endpoint doesn't receive any events since your last update. The payload logs are empty.",
    ),
    (
        "technical",
        "Très lent",
        "Le widget est très lent à charger sur mobile, plus de 8 secondes.",
    ),
    (
        "technical",
        "Shopify",
        "I installed the Chatim snippet in my Shopify theme but nothing shows up on the store.",
    ),
    (
        "technical",
        "Problème d'affichage",
        "Le widget passe en arrière-plan derrière notre bandeau cookies, on ne peut plus cliquer dessus.",
    ),
    (
        "technical",
        "Messages perdus",
        "Certains messages de visiteurs n'arrivent pas dans la boîte de réception de l'équipe.",
    ),
    (
        "technical",
        "Compte rendu",
        "Voici le compte rendu de notre appel : le widget ne se charge pas sur les pages produits.",
    ),
    (
        "technical",
        "Urgent",
        "Nos clients ne peuvent plus nous écrire via le chat depuis ce matin !!",
    ),
    (
        "technical",
        "Help",
        "Hi, the chat widget shows the wrong colours on Safari, the button is grey instead of blue.\n\nSent from my iPhone",
    ),
    (
        "billing",
        "Compte",
        "Bonjour, pouvez-vous me dire combien de conversations sont comptées dans mon forfait ?",
    ),
    (
        "billing",
        "Question",
        "Bonjour,\nJe voudrais savoir si vous proposez une réduction pour les associations.\nCordialement,\nMarie Dupont\nhttps://www.asso-exemple.fr",
    ),
    (
        "billing",
        "Question about my account",
        "Hi, I'd like to know how many conversations are included in my account each month and what happens if we go over.",
    ),
    ("technical", "Help!!", "nothing works since this morning"),
    (
        "technical",
        "Visiteurs",
        "Est-il possible de bloquer un visiteur qui nous envoie des insultes ?",
    ),
    // Account
    (
        "account",
        "Impossible de me connecter",
        "Bonjour, je n'arrive plus à me connecter à mon compte, le mot de passe est refusé.",
    ),
    (
        "account",
        "Forgot password",
        "I forgot my password and the reset email never arrives. Can you help?",
    ),
    (
        "account",
        "Changer mon adresse e-mail",
        "Je dois changer l'adresse e-mail de mon compte, je quitte l'entreprise.",
    ),
    (
        "account",
        "Delete my account",
        "Please delete my account and all my data (GDPR).",
    ),
    (
        "account",
        "2FA",
        "J'ai changé de téléphone et je ne reçois plus le code de vérification pour la double authentification.",
    ),
    (
        "account",
        "Account locked",
        "My account is locked after too many login attempts.",
    ),
    (
        "account",
        "Inviter un collègue",
        "Comment ajouter un agent à notre compte ? L'invitation n'arrive pas.",
    ),
    (
        "account",
        "Can't sign in",
        "Hello, since this morning I can't sign in, it says my credentials are invalid.",
    ),
    (
        "account",
        "Accès",
        "Mon collègue a quitté l'entreprise, comment lui retirer l'accès au tableau de bord ?",
    ),
    // Feature requests
    (
        "feature",
        "Suggestion",
        "Bonjour, merci de prendre en compte cette suggestion : un mode sombre pour le tableau de bord.",
    ),
    (
        "feature",
        "Idée",
        "Ce serait super de pouvoir exporter les conversations en CSV.",
    ),
    (
        "feature",
        "Feature request: dark mode",
        "It would be great if the widget had a dark mode option.",
    ),
    (
        "feature",
        "HubSpot",
        "Are you planning an integration with HubSpot? We'd love to sync our leads.",
    ),
    (
        "feature",
        "Serait-il possible",
        "Serait-il possible d'ajouter la possibilité de programmer des messages automatiques ?",
    ),
    (
        "feature",
        "Roadmap",
        "Is multi-language support on your roadmap?",
    ),
    (
        "technical",
        "Problème de connexion API",
        "Impossible de se connecter à l'API depuis notre serveur : erreur 401 Unauthorized.",
    ),
    (
        "technical",
        "Widget en anglais",
        "Le widget s'affiche en anglais alors que notre site est en français, comment changer la langue ?",
    ),
    (
        "technical",
        "Intégration Wix",
        "How do I add the chat widget to my Wix site? The install guide is unclear.",
    ),
    (
        "technical",
        "Bug",
        "Any idea why the chatbot sends the welcome message twice?",
    ),
    (
        "technical",
        "Le bot ne répond plus",
        "Depuis ce matin le bot ne répond plus aux visiteurs, le scénario semble bloqué.",
    ),
    (
        "billing",
        "Changement de plan",
        "Bonjour, nous voudrions passer au plan Business à partir du mois prochain. Faut-il résilier l'abonnement actuel ?",
    ),
    (
        "billing",
        "Devis",
        "Pouvez-vous nous faire un devis pour 15 agents en formule annuelle ?",
    ),
    (
        "billing",
        "Invoice address",
        "Can you change the company address on our invoices? We moved offices.",
    ),
    (
        "billing",
        "Subscription renewal",
        "Our subscription renewed automatically yesterday but we had planned to downgrade. Can we get a partial refund?",
    ),
    (
        "account",
        "Mot de passe",
        "Mon mot de passe ne fonctionne plus depuis la mise à jour.",
    ),
    (
        "account",
        "Accès",
        "Je n'arrive plus à accéder à mon compte depuis que j'ai changé de téléphone.",
    ),
    (
        "account",
        "Email change",
        "Could you please update the email on my account to jane@newco.com?",
    ),
    (
        "feature",
        "Suggestion d'amélioration",
        "Ce serait bien que le widget puisse afficher nos horaires d'ouverture.",
    ),
    (
        "other",
        "Candidature",
        "Bonjour, je vous adresse ma candidature spontanée pour un poste de développeur, CV en pièce jointe.",
    ),
    (
        "feature",
        "Integration Zapier",
        "Do you have a Zapier integration? We'd like to push new leads to our CRM.",
    ),
    (
        "feature",
        "Traduction",
        "Le widget pourrait-il être disponible en allemand ? Nous avons des clients en Allemagne.",
    ),
    (
        "feature",
        "Webhook",
        "Pouvez-vous ajouter un webhook quand une conversation est fermée ?",
    ),
    (
        "feature",
        "Notification sound",
        "Could you add an option to change the notification sound?",
    ),
    // Other
    (
        "other",
        "Partenariat",
        "Bonjour, nous sommes une agence web et souhaiterions vous proposer un partenariat revendeur.",
    ),
    (
        "other",
        "DPA",
        "Could you send us your DPA and the list of sub-processors for our legal team?",
    ),
    (
        "other",
        "Merci",
        "Merci beaucoup pour votre aide, bonne journée !",
    ),
    (
        "other",
        "Press inquiry",
        "I'm a journalist writing about chatbots in e-commerce, could I interview someone from your team?",
    ),
    ("other", "Hello", ""),
    (
        "other",
        "Re: merci",
        "Merci pour votre réponse rapide, ça fonctionne maintenant !\n\nEnvoyé de mon iPhone",
    ),
    (
        "other",
        "Thanks",
        "Thanks, all good now.\n\nSent from my iPhone",
    ),
    (
        "other",
        "GDPR",
        "Where is the chat data stored? We need to know for our GDPR compliance.",
    ),
];

#[test]
fn classifier_can_be_shared_and_swapped() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Classifier>();
    // What anyhow needs to carry it.
    fn error<T: std::error::Error + Send + Sync + 'static>() {}
    error::<RulesError>();
}

#[test]
fn default_rules_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    assert_eq!(Classifier::check_dir(&dir), vec![]);
    let rules = default_rules();
    let ids: Vec<&str> = rules.categories().iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["billing", "technical", "account", "feature", "other"]);
    assert_eq!(rules.fallback().id, "other");
    let promise = |id: &str| rules.category(id).and_then(|c| c.response);
    let hours = |min_hours, max_hours| {
        Some(ResponsePromise {
            min_hours,
            max_hours,
            business: true,
            confirm_only: false,
        })
    };
    assert_eq!(promise("billing"), hours(24, 24));
    assert_eq!(promise("technical"), hours(24, 48));
    assert_eq!(promise("account"), hours(24, 24));
    // "Confirmation sous 48 heures": the acknowledgement is the confirmation.
    let confirmation = hours(48, 48).map(|p| ResponsePromise {
        confirm_only: true,
        ..p
    });
    assert_eq!(promise("feature"), confirmation);
    assert_eq!(promise("other"), hours(24, 48));
    let feature = rules.category("feature").map(|c| c.label_for("fr"));
    assert_eq!(feature, Some("Demande de fonctionnalité"));
    let account = rules.category("account");
    assert_eq!(account.map(|c| c.label_for("en-GB")), Some("Account"));
    assert_eq!(account.map(|c| c.label_for("de")), Some("Account"));
}

#[test]
fn corpus_lands_in_the_expected_categories() {
    let mut wrong = String::new();
    for (expected, subject, body) in CORPUS {
        let c = classify(subject, body);
        if c.category != *expected {
            wrong.push_str(&format!(
                "expected {expected} for {subject:?} / {body:?}\n{}",
                explain(&c)
            ));
        }
    }
    assert!(CORPUS.len() >= 25);
    assert!(wrong.is_empty(), "misclassified:\n{wrong}");
}

/// The new requests of `fixtures/mail` (real MIME, as parsed by the pipeline) land where
/// `expected.toml` says.
#[test]
fn fixture_mail_lands_in_the_expected_categories() {
    #[derive(serde::Deserialize)]
    struct Expected {
        kind: String,
        category: Option<String>,
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mail");
    let text = std::fs::read_to_string(dir.join("expected.toml"))
        .unwrap_or_else(|e| panic!("fixtures/mail/expected.toml: {e}"));
    let expected: std::collections::BTreeMap<String, toml::Value> =
        toml::from_str(&text).unwrap_or_else(|e| panic!("expected.toml: {e}"));
    let mut checked = 0;
    let mut wrong = String::new();
    for (name, value) in expected {
        let Ok(Expected {
            kind,
            category: Some(category),
        }) = value.try_into::<Expected>()
        else {
            continue;
        };
        if kind != "new" {
            continue;
        }
        let raw = std::fs::read(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let msg = crate::parse::parse(&raw);
        let to: Vec<String> = msg
            .to
            .iter()
            .chain(msg.cc.iter())
            .map(|m| m.address.to_lowercase())
            .collect();
        let c = default_rules().classify(
            &ClassifyInput {
                subject: &msg.subject,
                body: &msg.new_text,
                from: msg.from_address(),
                to: &to,
                headers: &msg.headers,
            },
            "support@example.test",
        );
        checked += 1;
        if c.category != category {
            wrong.push_str(&format!("{name}: expected {category}\n{}", explain(&c)));
        }
    }
    assert!(checked >= 25, "only {checked} fixtures checked");
    assert!(wrong.is_empty(), "misclassified:\n{wrong}");
}

#[test]
fn explain_shows_field_text_and_weight() {
    let c = classify(
        "Prélèvement après résiliation",
        "J'ai résilié mais j'ai été prélevé.",
    );
    assert_eq!(c.category, "billing");
    assert!(c.hint.is_none());
    let charged = c.matches.iter().find(|m| m.rule == "charged");
    let charged = charged.unwrap_or_else(|| panic!("{}", explain(&c)));
    // The subject comes first in the rule's fields, and the text is shown as written.
    assert_eq!(charged.field, "subject");
    assert_eq!(charged.matched, "Prélèvement");
    assert_eq!(charged.weight, 3);
    assert_eq!(c.scores.first().map(|s| s.0.as_str()), Some("billing"));
    let total: i64 = c
        .matches
        .iter()
        .filter(|m| m.category == "billing")
        .map(|m| m.weight)
        .sum();
    assert_eq!(c.scores[0].1, total);
    // Each rule appears once, however many fields matched.
    assert_eq!(c.matches.iter().filter(|m| m.rule == "charged").count(), 1);
}

#[test]
fn matched_text_is_one_line_and_short() {
    let body = format!(
        "Bonjour,\nle widget ne\n   s'affiche pas. {}",
        "x".repeat(200)
    );
    let c = classify("", &body);
    let m = c.matches.iter().find(|m| m.rule == "not working");
    assert_eq!(m.map(|m| m.matched.as_str()), Some("ne s'affiche pas"));
    assert!(
        c.matches
            .iter()
            .all(|m| m.matched.chars().count() <= MATCH_EXCERPT_CHARS)
    );
}

#[test]
fn tips_of_the_chosen_category() {
    let c = classify(
        "Le widget ne s'affiche pas",
        "Depuis la mise à jour, le widget n'apparaît plus sur notre site.",
    );
    assert_eq!(c.category, "technical");
    let names: Vec<&str> = c.tips.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["widget not showing"]);
    assert!(
        c.tips[0]
            .text
            .get("fr")
            .is_some_and(|t| t.contains("</body>"))
    );

    let c = classify(
        "Prélèvement après résiliation",
        "Bonjour, j'ai résilié mon abonnement le 3 mai mais j'ai quand même été prélevé.",
    );
    let names: Vec<&str> = c.tips.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["charged after cancelling"]);

    let c = classify("Feature request", "It would be great to have a dark mode.");
    assert_eq!(c.category, "feature");
    assert_eq!(c.tips.len(), 1);
}

#[test]
fn tips_only_from_the_chosen_category() {
    // Both a billing tip ("need an invoice") and a technical tip match the text, but the
    // subject tag chooses technical.
    let c = classify(
        "[Technique] plusieurs soucis",
        "J'ai besoin d'une facture. Aussi, le widget ne s'affiche pas sur notre site.",
    );
    assert_eq!(c.category, "technical");
    assert!(
        c.tips.iter().all(|t| t.category == "technical"),
        "{:?}",
        c.tips
    );
    assert_eq!(c.tips.len(), 1);
    // Without the tag, the invoice wins and only its tip shows.
    let c = classify(
        "plusieurs soucis",
        "J'ai besoin d'une facture pour notre comptabilité.",
    );
    assert_eq!(c.category, "billing");
    let names: Vec<&str> = c.tips.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["need an invoice"]);
}

#[test]
fn plus_address_hint() {
    let technical_body = "Le widget ne s'affiche plus sur notre site, erreur 500.";
    let c = classify_to("Aide", technical_body, &["support+billing@chatim.app"]);
    assert_eq!(c.category, "billing");
    assert_eq!(
        c.hint.as_deref(),
        Some("plus-address support+billing@chatim.app")
    );
    // Rules are still scored, for the explanation.
    assert_eq!(c.scores.first().map(|s| s.0.as_str()), Some("technical"));

    // A label in any language, without accents, hyphenated.
    let to = [
        "someone@example.org",
        "support+demande-de-fonctionnalite@chatim.app",
    ];
    assert_eq!(classify_to("Aide", technical_body, &to).category, "feature");
    let to = ["support+facturation@chatim.app"];
    assert_eq!(classify_to("Aide", technical_body, &to).category, "billing");
    let to = ["support+compte@chatim.app"];
    assert_eq!(classify_to("Aide", technical_body, &to).category, "account");
    let to = ["Support+Autre@Chatim.App"];
    assert_eq!(classify_to("Aide", technical_body, &to).category, "other");

    // Not hints: a ticket reference, an unknown tag, someone else's domain or mailbox.
    for to in [
        "support+cht-12@chatim.app",
        "support+CHT-12@chatim.app",
        "support+urgent@chatim.app",
        "support+billing@example.org",
        "sales+billing@chatim.app",
        "support@chatim.app",
    ] {
        let c = classify_to("Aide", technical_body, &[to]);
        assert_eq!((c.category.as_str(), c.hint), ("technical", None), "{to}");
    }
}

#[test]
fn support_address_with_a_plus() {
    let to = vec!["team+support+billing@chatim.app".to_string()];
    let c = default_rules().classify(
        &ClassifyInput {
            subject: "",
            body: "widget",
            from: "a@b.c",
            to: &to,
            headers: &[],
        },
        "team+support@chatim.app",
    );
    assert_eq!(c.category, "billing");
}

#[test]
fn subject_tag_hint() {
    let body = "Le widget ne s'affiche plus sur notre site.";
    let c = classify("[Facturation] question", body);
    assert_eq!(c.category, "billing");
    assert_eq!(c.hint.as_deref(), Some("subject tag [Facturation]"));
    for subject in [
        "[Billing] question",
        "[billing] question",
        "  [facturation] question",
        "[FACTURATION]question",
    ] {
        assert_eq!(classify(subject, body).category, "billing", "{subject}");
    }
    let c = classify("[Demande de fonctionnalite] mode sombre", body);
    assert_eq!(c.category, "feature");
    assert_eq!(
        classify("[Demande de fonctionnalité] x", body).category,
        "feature"
    );
    assert_eq!(classify("[Feature request] x", body).category, "feature");

    // Not hints: after a reply or forward prefix, a ticket reference, an unknown tag, a tag
    // that is not leading.
    for subject in [
        "Re: [Facturation] question",
        "RE: [Billing] question",
        "Fwd: [billing] question",
        "TR: [Facturation] question",
        "[CHT-12] question",
        "[Urgent] question",
        "Question [Facturation]",
    ] {
        let c = classify(subject, body);
        assert_eq!(
            (c.category.as_str(), c.hint),
            ("technical", None),
            "{subject}"
        );
    }
}

#[test]
fn plus_address_beats_subject_tag() {
    let c = classify_to("[Facturation] x", "", &["support+technical@chatim.app"]);
    assert_eq!(c.category, "technical");
}

#[test]
fn headers_and_addresses_as_fields() {
    let dir = tempdir();
    write(&dir, "other.toml", &category("other", 90, true, ""));
    write(
        &dir,
        "vip.toml",
        &category(
            "vip",
            5,
            false,
            "[[rule]]\nname = \"priority header\"\nfields = [\"X-Priority\"]\npattern = '(?m)^1'\nweight = 5\n\n\
             [[rule]]\nname = \"sent to sales\"\nfields = [\"to\"]\npattern = '(?m)^sales@'\n\n\
             [[rule]]\nname = \"big customer\"\nfields = [\"from\"]\npattern = '@bigcorp\\.com$'\n",
        ),
    );
    let rules = load(&dir);
    let headers = vec![
        ("x-priority".to_string(), "3".to_string()),
        ("x-priority".to_string(), "1 (Highest)".to_string()),
    ];
    let to = vec![
        "support@chatim.app".to_string(),
        "sales@chatim.app".to_string(),
    ];
    let c = rules.classify(
        &ClassifyInput {
            subject: "",
            body: "",
            from: "ceo@bigcorp.com",
            to: &to,
            headers: &headers,
        },
        SUPPORT,
    );
    assert_eq!(c.category, "vip");
    assert_eq!(c.scores, vec![("vip".to_string(), 7)]);
    let fields: Vec<(&str, &str)> = c
        .matches
        .iter()
        .map(|m| (m.field.as_str(), m.matched.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("x-priority", "1"),
            ("to", "sales@"),
            ("from", "@bigcorp.com")
        ]
    );
}

#[test]
fn no_match_goes_to_the_fallback() {
    let c = classify("Bonjour", "Merci !");
    assert_eq!(c.category, "other");
    assert!(c.scores.is_empty() && c.matches.is_empty() && c.hint.is_none());
}

// ---- Small rules directories written for one test each.

use tempfile::TempDir;

fn tempdir() -> TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"))
}

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

fn load(dir: &TempDir) -> Classifier {
    Classifier::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"))
}

/// A valid category file; `rest` is appended.
fn category(id: &str, order: i64, fallback: bool, rest: &str) -> String {
    format!(
        "id = \"{id}\"\nlabel = {{ en = \"{id} label\" }}\norder = {order}\nfallback = {fallback}\n\n{rest}"
    )
}

fn rule(name: &str, pattern: &str, weight: i64) -> String {
    format!("[[rule]]\nname = \"{name}\"\npattern = '{pattern}'\nweight = {weight}\n\n")
}

fn check(dir: &TempDir) -> Vec<RuleProblem> {
    let problems = Classifier::check_dir(dir.path());
    let err = Classifier::load_dir(dir.path()).err();
    assert_eq!(
        err.as_ref()
            .map(|e| e.problems().to_vec())
            .unwrap_or_default(),
        problems
    );
    problems
}

fn at(problem: &RuleProblem) -> (String, usize) {
    let file = problem
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned());
    (file.unwrap_or_default(), problem.line)
}

#[test]
fn tie_goes_to_the_lower_order() {
    let dir = tempdir();
    write(&dir, "other.toml", &category("other", 90, true, ""));
    write(
        &dir,
        "a.toml",
        &category("alpha", 20, false, &rule("r", "widget", 2)),
    );
    write(
        &dir,
        "b.toml",
        &category("beta", 10, false, &rule("r", "widget", 2)),
    );
    let rules = load(&dir);
    let input = ClassifyInput {
        subject: "the widget",
        body: "",
        from: "",
        to: &[],
        headers: &[],
    };
    let c = rules.classify(&input, SUPPORT);
    assert_eq!(c.category, "beta");
    assert_eq!(
        c.scores,
        vec![("beta".to_string(), 2), ("alpha".to_string(), 2)]
    );

    write(
        &dir,
        "b.toml",
        &category("beta", 30, false, &rule("r", "widget", 2)),
    );
    assert_eq!(load(&dir).classify(&input, SUPPORT).category, "alpha");

    // A higher total beats a lower order.
    write(
        &dir,
        "b.toml",
        &category("beta", 30, false, &rule("r", "widget", 3)),
    );
    assert_eq!(load(&dir).classify(&input, SUPPORT).category, "beta");
}

#[test]
fn negative_weights_can_cancel_a_category() {
    let dir = tempdir();
    write(&dir, "other.toml", &category("other", 90, true, ""));
    let rules = format!(
        "{}{}",
        rule("compte", "compte", 2),
        rule("en compte", "en compte", -2)
    );
    write(&dir, "a.toml", &category("account", 10, false, &rules));
    let c = load(&dir).classify(
        &ClassifyInput {
            subject: "",
            body: "merci de prendre en compte",
            from: "",
            to: &[],
            headers: &[],
        },
        SUPPORT,
    );
    assert_eq!(c.category, "other");
    assert_eq!(c.matches.len(), 2);
    assert!(c.scores.is_empty());
}

#[test]
fn bad_regex_is_reported_with_its_line() {
    let dir = tempdir();
    write(&dir, "other.toml", &category("other", 90, true, ""));
    let rest = format!(
        "{}{}",
        rule("ok", "fine", 1),
        rule("broken", r"(?i)\b(factur", 1)
    );
    let file = write(&dir, "billing.toml", &category("billing", 10, false, &rest));
    let problems = check(&dir);
    assert_eq!(problems.len(), 1, "{problems:?}");
    // Lines: 1-5 header, rule "ok" at 6-9, blank 10, [[rule]] 11, name 12, pattern 13.
    assert_eq!(at(&problems[0]), ("billing.toml".to_string(), 13));
    assert!(
        problems[0].reason.contains("unclosed group"),
        "{}",
        problems[0].reason
    );
    assert!(
        problems[0].reason.contains("broken"),
        "{}",
        problems[0].reason
    );
    let shown = problems[0].to_string();
    assert!(
        shown.starts_with(&format!("{}:13: ", file.display())),
        "{shown}"
    );
    assert!(!shown.contains('\n'));
}

#[test]
fn duplicate_id_is_reported_on_the_second_file() {
    let dir = tempdir();
    write(&dir, "other.toml", &category("other", 90, true, ""));
    write(&dir, "a.toml", &category("billing", 10, false, ""));
    write(
        &dir,
        "b.toml",
        &format!("# copy\n{}", category("billing", 20, false, "")),
    );
    let problems = check(&dir);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(at(&problems[0]), ("b.toml".to_string(), 2));
    assert!(problems[0].reason.contains("duplicate id `billing`"));
    assert!(problems[0].reason.contains("a.toml:1"));
}

#[test]
fn fallback_must_be_exactly_one() {
    let dir = tempdir();
    write(&dir, "a.toml", &category("other", 90, true, ""));
    write(&dir, "b.toml", &category("misc", 80, true, ""));
    let problems = check(&dir);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(at(&problems[0]), ("b.toml".to_string(), 4));
    assert!(
        problems[0].reason.contains("a.toml:4"),
        "{}",
        problems[0].reason
    );

    write(&dir, "a.toml", &category("other", 90, false, ""));
    write(&dir, "b.toml", &category("misc", 80, false, ""));
    let problems = check(&dir);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        (problems[0].file.as_path(), problems[0].line),
        (dir.path(), 0)
    );
    assert!(problems[0].reason.contains("fallback"));
}

#[test]
fn unknown_keys_are_reported_everywhere() {
    let dir = tempdir();
    write(&dir, "other.toml", &category("other", 90, true, ""));
    let text = "id = \"billing\"\n\
                label = { fr = \"Facturation\" }\n\
                colour = \"red\"\n\
                order = 10\n\
                response = { min_hours = 24, max_hour = 24 }\n\
                \n\
                [[rule]]\n\
                name = \"invoice\"\n\
                pattern = 'factur'\n\
                wieght = 3\n\
                \n\
                [[tip]]\n\
                name = \"t\"\n\
                pattern = 'x'\n\
                text = { fr = \"a\" }\n\
                lang = \"fr\"\n";
    write(&dir, "billing.toml", text);
    let problems = check(&dir);
    let lines: Vec<(usize, &str)> = problems
        .iter()
        .map(|p| (p.line, p.reason.as_str()))
        .collect();
    assert_eq!(problems.len(), 5, "{lines:?}");
    assert_eq!(lines[0].0, 3);
    assert!(lines[0].1.contains("unknown key `colour`"));
    assert_eq!(lines[1].0, 5);
    assert!(lines[1].1.contains("response.max_hour"));
    assert_eq!(lines[2].0, 5);
    assert!(lines[2].1.contains("lacks `max_hours`"));
    assert_eq!(lines[3].0, 10);
    assert!(lines[3].1.contains("unknown key `wieght` in a [[rule]]"));
    assert_eq!(lines[4].0, 16);
    assert!(lines[4].1.contains("unknown key `lang` in a [[tip]]"));
}

#[test]
fn toml_syntax_error_has_its_line() {
    let dir = tempdir();
    write(&dir, "other.toml", &category("other", 90, true, ""));
    write(
        &dir,
        "billing.toml",
        "id = \"billing\"\nlabel = { en = \"Billing\" }\norder = = 10\n",
    );
    let problems = check(&dir);
    assert!(!problems.is_empty());
    assert!(
        problems
            .iter()
            .all(|p| at(p) == ("billing.toml".to_string(), 3)),
        "{problems:?}"
    );
    assert!(problems[0].reason.starts_with("TOML syntax error"));

    // A broken file may hold the fallback: no spurious "no fallback" problem.
    write(&dir, "other.toml", "id = \"other\"\nfallback = tru\n");
    let problems = check(&dir);
    assert!(
        problems
            .iter()
            .all(|p| p.line > 0 && !p.reason.contains("no category")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| at(p) == ("other.toml".to_string(), 2)),
        "{problems:?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let dir = tempdir();
    write(&dir, "other.toml", &category("other", 90, true, ""));
    let text = "id = \"Billing!\"\n\
                order = \"ten\"\n\
                response = { min_hours = 48, max_hours = 24 }\n\
                \n\
                [[rule]]\n\
                name = \"empty fields\"\n\
                fields = []\n\
                pattern = 'x'\n\
                \n\
                [[rule]]\n\
                name = \"matches everything\"\n\
                pattern = 'a*'\n\
                weight = 0\n\
                \n\
                [[rule]]\n\
                name = \"no pattern\"\n";
    write(&dir, "billing.toml", text);
    let problems = check(&dir);
    let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, [1, 1, 2, 3, 7, 12, 13, 15], "{problems:#?}");
    let reasons: Vec<&str> = problems.iter().map(|p| p.reason.as_str()).collect();
    assert!(reasons[0].contains("`id`"));
    assert!(reasons[1].contains("missing `label`"));
    assert!(reasons[2].contains("`order` must be an integer, not string"));
    assert!(reasons[3].contains("min_hours` (48) is more than `max_hours` (24)"));
    assert!(reasons[4].contains("is empty"));
    assert!(reasons[5].contains("matches empty text"));
    assert!(reasons[6].contains("is 0"));
    assert!(reasons[7].contains("`pattern` of rule \"no pattern\" is missing"));
    // The error's Display is the same list, one problem per line.
    let err = Classifier::load_dir(dir.path())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(err.lines().count(), problems.len());
}

#[test]
fn ambiguous_hint_names_and_duplicate_orders() {
    let dir = tempdir();
    write(
        &dir,
        "other.toml",
        &category("other", 90, true, "aliases = [\"billing\"]\n"),
    );
    write(&dir, "billing.toml", &category("billing", 90, false, ""));
    let problems = check(&dir);
    let found: Vec<(String, usize)> = problems.iter().map(at).collect();
    assert_eq!(
        found,
        [("other.toml".to_string(), 3), ("other.toml".to_string(), 6)],
        "{problems:#?}"
    );
    assert!(problems[0].reason.contains("order 90"));
    assert!(problems[1].reason.contains("also names category `billing`"));
}

#[test]
fn empty_or_missing_directory() {
    let dir = tempdir();
    let problems = check(&dir);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].reason.contains("no *.toml"));
    let missing = dir.path().join("nope");
    let problems = Classifier::check_dir(&missing);
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0]
            .to_string()
            .starts_with(&format!("{}: cannot read", missing.display()))
    );
}

#[test]
fn hidden_and_non_toml_files_are_ignored() {
    let dir = tempdir();
    write(&dir, "other.toml", &category("other", 90, true, ""));
    write(&dir, ".#other.toml", "garbage = = =");
    write(&dir, "README.md", "not rules");
    assert!(check(&dir).is_empty());
}

#[test]
fn accents_in_patterns_are_optional() {
    let dir = tempdir();
    write(&dir, "other.toml", &category("other", 90, true, ""));
    let rest = format!(
        "{}{}",
        rule("accented", "prélèvement", 1),
        rule("plain", "resilie", 1)
    );
    write(&dir, "a.toml", &category("billing", 10, false, &rest));
    let rules = load(&dir);
    let c = rules.classify(
        &ClassifyInput {
            subject: "PRELEVEMENT",
            body: "J'ai résilié",
            from: "",
            to: &[],
            headers: &[],
        },
        SUPPORT,
    );
    let matched: Vec<&str> = c.matches.iter().map(|m| m.matched.as_str()).collect();
    assert_eq!(matched, ["PRELEVEMENT", "résilié"]);
}
