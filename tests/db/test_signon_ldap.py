"""LDAP log-in against a real slapd (Debian's `slapd`) that the test starts on a free port.

The settings are made by settings.py's own `_ldap_settings()` from DCT_LDAP_*
variables; the log-in goes through the portal's login view.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import ldap
import ldap.modlist
import pytest
from django.contrib.auth import get_user_model

from dctoolkit import settings as dct_settings
from dctoolkit.dev.stack import free_port, wait_until

SUFFIX = "dc=lab,dc=test"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "slapd-admin-secret"
SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"

CONFIG = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "{admin}"
rootpw {password}
directory {dir}/db
"""


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    assert os.path.exists(SLAPD), "slapd is missing: apt-get install slapd ldap-utils (.ci/run installs them)"
    folder: Path = tmp_path_factory.mktemp("slapd")
    (folder / "db").mkdir()
    (folder / "slapd.conf").write_text(
        CONFIG.format(dir=folder, suffix=SUFFIX, admin=ADMIN_DN, password=ADMIN_PASSWORD)
    )
    port = free_port()
    uri = f"ldap://127.0.0.1:{port}"
    with open(folder / "slapd.log", "w") as log:
        proc = subprocess.Popen(
            [SLAPD, "-d", "0", "-f", str(folder / "slapd.conf"), "-h", uri + "/"], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: binds(uri) or proc.poll() is not None, 20, f"slapd on port {port}")
        assert proc.poll() is None, (folder / "slapd.log").read_text()
        populate(uri)
        yield uri
    finally:
        proc.terminate()
        proc.wait(10)


def binds(uri: str) -> bool:
    try:
        conn = ldap.initialize(uri)
        conn.simple_bind_s(ADMIN_DN, ADMIN_PASSWORD)
        conn.unbind_s()
        return True
    except ldap.LDAPError:
        return False


def populate(uri: str) -> None:
    conn = ldap.initialize(uri)
    conn.simple_bind_s(ADMIN_DN, ADMIN_PASSWORD)
    entries = {
        SUFFIX: {"objectClass": [b"dcObject", b"organization"], "dc": [b"lab"], "o": [b"Lab"]},
        f"ou=people,{SUFFIX}": {"objectClass": [b"organizationalUnit"], "ou": [b"people"]},
        f"ou=groups,{SUFFIX}": {"objectClass": [b"organizationalUnit"], "ou": [b"groups"]},
        f"uid=carol,ou=people,{SUFFIX}": person("carol", "Carol", "Admin", "carol-ldap-pw"),
        f"uid=dave,ou=people,{SUFFIX}": person("dave", "Dave", "User", "dave-ldap-pw"),
        f"cn=dct-staff,ou=groups,{SUFFIX}": {
            "objectClass": [b"groupOfNames"],
            "cn": [b"dct-staff"],
            "member": [f"uid=carol,ou=people,{SUFFIX}".encode()],
        },
        f"cn=service,{SUFFIX}": {
            "objectClass": [b"simpleSecurityObject", b"organizationalRole"],
            "cn": [b"service"],
            "userPassword": [b"bind-pw-from-a-file"],
        },
    }
    for dn, attrs in entries.items():
        conn.add_s(dn, ldap.modlist.addModlist(attrs))
    conn.unbind_s()


def person(uid: str, given: str, sn: str, password: str) -> dict[str, list[bytes]]:
    return {
        "objectClass": [b"inetOrgPerson"],
        "uid": [uid.encode()],
        "cn": [f"{given} {sn}".encode()],
        "givenName": [given.encode()],
        "sn": [sn.encode()],
        "mail": [f"{uid}@lab.test".encode()],
        "userPassword": [password.encode()],
    }


@pytest.fixture
def ldap_on(slapd, settings, monkeypatch, tmp_path):
    """The settings settings.py makes from DCT_LDAP_* (the bind password read from a file)."""
    secret = tmp_path / "bind-password"
    secret.write_text("bind-pw-from-a-file\n")
    for name, value in {
        "DCT_LDAP_URI": slapd,
        "DCT_LDAP_BIND_DN": f"cn=service,{SUFFIX}",
        "DCT_LDAP_BIND_PASSWORD_FILE": str(secret),
        "DCT_LDAP_USER_SEARCH": f"ou=people,{SUFFIX}",
        "DCT_LDAP_STAFF_GROUP": f"cn=dct-staff,ou=groups,{SUFFIX}",
    }.items():
        monkeypatch.setenv(name, value)
    for key, value in dct_settings._ldap_settings().items():
        setattr(settings, key, value)
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "django_auth_ldap.backend.LDAPBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    return settings


def log_in(client, username: str, password: str) -> bool:
    response = client.post("/accounts/login/", {"username": username, "password": password})
    return response.status_code == 302 and "_auth_user_id" in client.session


@pytest.mark.django_db
def test_an_ldap_user_is_created_at_first_log_in_with_staff_from_the_group(ldap_on, client):
    User = get_user_model()
    assert not User.objects.filter(username="carol").exists()
    assert log_in(client, "carol", "carol-ldap-pw")
    carol = User.objects.get(username="carol")
    assert (carol.is_staff, carol.email, carol.first_name) == (True, "carol@lab.test", "Carol")
    assert not carol.has_usable_password(), "the password stays in LDAP"
    client.logout()
    assert log_in(client, "dave", "dave-ldap-pw")
    assert User.objects.get(username="dave").is_staff is False


@pytest.mark.django_db
def test_a_wrong_ldap_password_or_unknown_user_is_refused(ldap_on, client):
    assert not log_in(client, "carol", "not-her-password")
    assert not log_in(client, "nobody", "carol-ldap-pw")
    assert not get_user_model().objects.filter(username="nobody").exists()


@pytest.mark.django_db
def test_local_accounts_keep_working_with_ldap_on(ldap_on, client):
    get_user_model().objects.create_user("erin", password="erin-local-pw")
    assert log_in(client, "erin", "erin-local-pw")


def test_ldap_without_a_user_search_base_stops_start_up(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("DCT_LDAP_URI", "ldap://127.0.0.1:1")
    monkeypatch.delenv("DCT_LDAP_USER_SEARCH", raising=False)
    with pytest.raises(ImproperlyConfigured, match="DCT_LDAP_USER_SEARCH"):
        dct_settings._ldap_settings()
