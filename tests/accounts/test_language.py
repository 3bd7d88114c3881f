"""Language: from the browser by default, switchable, remembered on the account."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.utils import translation
from django.utils.formats import date_format, number_format

from accounts.language import language_for
from tests.conftest import make_user

LOGIN = "/accounts/login/"
SETLANG = "/i18n/setlang/"


def test_the_browser_language_is_the_default(client, db):
    english = client.get(LOGIN, HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    chinese = client.get(LOGIN, HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()
    assert '<html lang="en">' in english and "<h1>Log in</h1>" in english
    assert '<html lang="zh-hans">' in chinese and "<h1>登录</h1>" in chinese


def test_an_anonymous_switch_sets_the_cookie_and_goes_back(client, db):
    response = client.post(SETLANG, {"language": "zh-hans", "next": LOGIN},
                           HTTP_ACCEPT_LANGUAGE="en")  # fmt: skip
    assert response.status_code == 302 and response["Location"] == LOGIN
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    page = client.get(LOGIN, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "<h1>登录</h1>" in page


def test_a_logged_in_switch_is_saved_on_the_account(client, db):
    user = make_user("li@example.org")
    client.force_login(user)
    client.post(SETLANG, {"language": "zh-hans", "next": "/accounts/tokens/"})
    user.refresh_from_db()
    assert user.language == "zh-hans"
    client.post(SETLANG, {"language": "en", "next": "/accounts/tokens/"})
    user.refresh_from_db()
    assert user.language == "en"


def test_the_saved_language_follows_the_user_to_another_browser(client, db):
    user = make_user("li@example.org", language="zh-hans")
    client.force_login(user)  # a fresh client: no language cookie, an English browser
    page = client.get("/accounts/tokens/", HTTP_ACCEPT_LANGUAGE="en-US")
    assert '<html lang="zh-hans">' in page.content.decode()
    assert page["Content-Language"] == "zh-hans"


def test_an_unknown_language_changes_nothing(client, db):
    user = make_user("li@example.org", language="en")
    client.force_login(user)
    response = client.post(SETLANG, {"language": "xx", "next": LOGIN})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.language == "en"


def test_switching_needs_a_post(client, db):
    assert client.get(SETLANG, {"language": "zh-hans"}).status_code == 405


def test_the_switcher_posts_the_current_page_as_next(client, db):
    page = client.get(LOGIN + "?next=/accounts/tokens/").content.decode()
    assert f'action="{SETLANG}"' in page
    assert 'name="next" value="/accounts/login/?next=/accounts/tokens/"' in page
    assert 'name="language" value="zh-hans"' in page


def test_language_for_prefers_the_users_own(db):
    assert language_for(make_user("a@example.org", language="zh-hans"), "en") == "zh-hans"
    assert language_for(make_user("b@example.org"), "zh-hans") == "zh-hans"
    assert language_for(None, None) == settings.LANGUAGE_CODE


def test_numbers_and_dates_follow_the_language():
    from datetime import date

    amount, day = Decimal("12345.5"), date(2026, 3, 18)
    with translation.override("en"):
        assert number_format(amount, 2, force_grouping=True) == "12,345.50"
        assert date_format(day) == "March 18, 2026"
    with translation.override("zh-hans"):
        assert number_format(amount, 2, force_grouping=True) == "12,345.50"
        assert date_format(day) == "2026年3月18日"
