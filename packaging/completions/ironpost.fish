# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_ironpost_global_optspecs
    string join \n log-format= h/help V/version
end

function __fish_ironpost_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_ironpost_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_ironpost_using_subcommand
    set -l cmd (__fish_ironpost_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c ironpost -n "__fish_ironpost_needs_command" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_needs_command" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_needs_command" -s V -l version -d 'Print version'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "serve" -d 'Run the MTA daemon'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "signer-supervisor" -d 'Internal: the signer process `serve` starts (not for direct use)'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "check" -d 'Check a policy without starting: run its `init`, load its helper files and keysources, check directory modes; print every problem'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "dkim" -d 'DKIM key tooling: generate keys and check their DNS records'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "dns" -d 'The sending domain\'s DNS posture: records to publish, checks of what is live'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "tls-report" -d 'Print a day\'s TLS report (RFC 8460) as sent or to be sent, with the state of each destination'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "traffic-gen" -d 'Load generator: send mail over SMTP (pipelining, STARTTLS, AUTH) and report msg/s, latency per phase and errors by reply code; `sink` accepts and counts mail for benchmarks'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "queue" -d 'Queues held by the daemon'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "bounce" -d 'Bounce queued messages for a destination domain and/or tenant now'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "suspend" -d 'Suspend delivery for a destination domain, tenant, campaign or egress source (kept across restarts)'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "suspend-list" -d 'List the suspensions in force'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "suspend-cancel" -d 'End a suspension early'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "automation-list" -d 'List what traffic-shaping automation holds: suspensions, egress path overrides and bounces, with their ids'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "automation-cancel" -d 'End an automation suspension, override or bounce early'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "inspect" -d 'Show a spooled message\'s envelope and metadata'
complete -c ironpost -n "__fish_ironpost_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ironpost -n "__fish_ironpost_using_subcommand serve" -l policy -d 'Lua policy file (KumoMTA policy API). Defaults to /etc/ironpost/policy.lua when it exists (an installed package), else the built-in policy' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand serve" -l user -d 'Drop all privileges to this user after binding listeners (when started as root)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand serve" -l max-inflight-memory -d 'Memory for message content being received, across all connections (bytes, or "512MB", "2GiB"). Beyond it new transactions get `452 4.3.1`. Default: a quarter of the machine\'s memory' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand serve" -l sqlite-dir -d 'A directory, besides the policy\'s own, where the policy\'s `sqlite.open` may open databases. Repeatable' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand serve" -l signer-user -d 'The user the signer process (which holds the DKIM keys) runs as. Default: --user. A user of its own keeps the keys from the network process even if that process is taken over' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand serve" -l signer-key-dir -d 'A directory under which the signer reads DKIM key files; keys elsewhere are refused. Repeatable. Without it, key files are confined only with a --signer-user of its own, to the policy\'s directory, /etc/ironpost/dkim and /opt/kumomta/etc/dkim' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand serve" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand serve" -l print-default-policy -d 'Print the built-in default policy and exit'
complete -c ironpost -n "__fish_ironpost_using_subcommand serve" -l lua-unrestricted -d 'Give the policy the full Lua standard library (io, os, package) instead of the sandbox. Only for policies you fully trust'
complete -c ironpost -n "__fish_ironpost_using_subcommand serve" -l in-process-signing -d 'Load DKIM keys in the network process, with no signer process and no seccomp filter (as KumoMTA does). Weaker; for comparison only'
complete -c ironpost -n "__fish_ironpost_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ironpost -n "__fish_ironpost_using_subcommand signer-supervisor" -l key-dir -d 'Directories under which key files may be read. Repeatable' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand signer-supervisor" -l user -d 'The user to run as (when started as root)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand signer-supervisor" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand signer-supervisor" -l confine-key-files -d 'Serve key files only under --key-dir (the signer has a user of its own, so it can read what the network process cannot)'
complete -c ironpost -n "__fish_ironpost_using_subcommand signer-supervisor" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand check" -l policy -d 'The policy to check (default: the one `serve` would use)' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand check" -l user -d 'The user the daemon would drop to: its policy must not be writable by it' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand check" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand check" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and not __fish_seen_subcommand_from keygen verify-dns help" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and not __fish_seen_subcommand_from keygen verify-dns help" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and not __fish_seen_subcommand_from keygen verify-dns help" -f -a "keygen" -d 'Generate a private key and print the DNS TXT record to publish'
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and not __fish_seen_subcommand_from keygen verify-dns help" -f -a "verify-dns" -d 'Check that the DKIM TXT record published for a selector matches a private key. Exits non-zero unless it matches'
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and not __fish_seen_subcommand_from keygen verify-dns help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from keygen" -l domain -d 'Signing domain (d=)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from keygen" -l selector -d 'Selector (s=)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from keygen" -l algo -d 'Key algorithm: ed25519 or rsa' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from keygen" -l bits -d 'RSA modulus size in bits (2048 to 4096; default 2048). RSA only' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from keygen" -l out -d 'Directory that holds the keys, one subdirectory per domain' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from keygen" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from keygen" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from verify-dns" -l domain -d 'Signing domain (d=)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from verify-dns" -l selector -d 'Selector (s=)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from verify-dns" -l key -d 'Private key file (PEM or DER)' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from verify-dns" -l algo -d 'Key algorithm: ed25519 or rsa. Detected from the key when absent' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from verify-dns" -l txt -d 'Check this record text instead of looking it up in DNS (the value, or zone-file quoted strings)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from verify-dns" -l resolver -d 'Ask this DNS server (ip:port) instead of the system resolvers' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from verify-dns" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from verify-dns" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "keygen" -d 'Generate a private key and print the DNS TXT record to publish'
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "verify-dns" -d 'Check that the DKIM TXT record published for a selector matches a private key. Exits non-zero unless it matches'
complete -c ironpost -n "__fish_ironpost_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and not __fish_seen_subcommand_from records check help" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and not __fish_seen_subcommand_from records check help" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and not __fish_seen_subcommand_from records check help" -f -a "records" -d 'Print the records to publish for a mail domain (zone-file lines with a comment each): SPF from the egress sources, DKIM for each signing key, DMARC, MTA-STS, TLS-RPT, BIMI, TLSA'
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and not __fish_seen_subcommand_from records check help" -f -a "check" -d 'Resolve what is live (through a validating resolver) and grade each record: pass, warn or fail. Exits non-zero on any fail'
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and not __fish_seen_subcommand_from records check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from records" -l domain -d 'The mail domain' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from records" -l policy -d 'The policy (default: the one `serve` would use)' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from records" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from records" -l json -d 'Print JSON instead of zone-file lines'
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from records" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from check" -l domain -d 'The mail domain' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from check" -l policy -d 'The policy (default: the one `serve` would use)' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from check" -l resolver -d 'Ask this name server (ip:port) instead of the policy\'s resolver' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from check" -l trust-anchor -d 'DNSKEY records (zone-file format) to trust instead of the root\'s' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from check" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from check" -l json -d 'Print JSON instead of zone-file lines'
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from help" -f -a "records" -d 'Print the records to publish for a mail domain (zone-file lines with a comment each): SPF from the egress sources, DKIM for each signing key, DMARC, MTA-STS, TLS-RPT, BIMI, TLSA'
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from help" -f -a "check" -d 'Resolve what is live (through a validating resolver) and grade each record: pass, warn or fail. Exits non-zero on any fail'
complete -c ironpost -n "__fish_ironpost_using_subcommand dns; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ironpost -n "__fish_ironpost_using_subcommand tls-report" -l day -d 'The UTC day (YYYY-MM-DD)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand tls-report" -l domain -d 'Only this policy domain' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand tls-report" -l policy -d 'The policy whose spool holds the counts (default: the one `serve` would use)' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand tls-report" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand tls-report" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l target -d 'The SMTP server to send to' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -s c -l concurrency -d 'Connections open at once' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -s n -l messages -d 'Stop after this many messages (with --duration: at whichever comes first)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l duration -d 'Stop after this long, e.g. `30s` or `5m`' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l size -d 'Size of each message in bytes, headers included (`10KiB` and `1MB` work too). The body is padded with 76-character lines' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l sender-domains -d 'Sender domains, comma-separated, used in turn (`sender<N>@domain`). Default: traffic-gen.test' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l recipient-domains -d 'Recipient domains, comma-separated, used in turn (`user<N>@domain`). Default: example.test' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l domains-count -d 'Recipient domains dom1.test … dom<N>.test, so that routing and per-domain queues are exercised' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l from -d 'One sender address for every message' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l to -d 'One recipient address for every message' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l ehlo-name -d 'The name sent with EHLO' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l tls-ca -d 'Trust this CA (PEM) too; implies --tls-verify' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l tls-name -d 'The name for SNI and certificate verification. Default: the target\'s host' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l auth-user -d 'AUTH PLAIN as this user, after STARTTLS' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l auth-password -d 'The password for --auth-user (visible to other local users in the process list: use a test account)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l messages-per-connection -d 'Messages sent on a connection before it is closed and a new one opened (1: a connection per message). Default: unlimited' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l timeout -d 'Limit of each step: connecting, each reply, each write' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l starttls -d 'STARTTLS on every connection (a server that does not offer it is an error). Without --tls-verify any certificate is accepted'
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l tls-verify -d 'Validate the server\'s certificate and name against the system roots (and --tls-ca)'
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l json -d 'Print the report as JSON instead of a table'
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -l progress -d 'A progress line on stderr every second even when stderr is not a terminal (on a terminal it is always shown)'
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -f -a "sink" -d 'Accept and discard mail, counting it: the far end of benchmarks'
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and not __fish_seen_subcommand_from sink help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and __fish_seen_subcommand_from sink" -l listen -d 'Address and port to listen on' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and __fish_seen_subcommand_from sink" -l tls-cert -d 'Certificate chain (PEM) for STARTTLS; implies --starttls' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and __fish_seen_subcommand_from sink" -l tls-key -d 'Private key (PEM) of --tls-cert' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and __fish_seen_subcommand_from sink" -l count-file -d 'Rewritten every 50 ms (a temporary file, then a rename) with the number of messages accepted so far, for benchmarks to poll' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and __fish_seen_subcommand_from sink" -l hostname -d 'The name in the banner, the EHLO reply and the self-signed certificate' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and __fish_seen_subcommand_from sink" -l max-message-size -d 'Largest message accepted (advertised with SIZE)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and __fish_seen_subcommand_from sink" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and __fish_seen_subcommand_from sink" -l starttls -d 'Offer STARTTLS (with a self-signed certificate unless --tls-cert)'
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and __fish_seen_subcommand_from sink" -l require-starttls -d 'Refuse MAIL before STARTTLS with `530 5.7.0`; implies --starttls'
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and __fish_seen_subcommand_from sink" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and __fish_seen_subcommand_from help" -f -a "sink" -d 'Accept and discard mail, counting it: the far end of benchmarks'
complete -c ironpost -n "__fish_ironpost_using_subcommand traffic-gen; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ironpost -n "__fish_ironpost_using_subcommand queue; and not __fish_seen_subcommand_from summary help" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand queue; and not __fish_seen_subcommand_from summary help" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand queue; and not __fish_seen_subcommand_from summary help" -f -a "summary" -d 'Messages per scheduled queue'
complete -c ironpost -n "__fish_ironpost_using_subcommand queue; and not __fish_seen_subcommand_from summary help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ironpost -n "__fish_ironpost_using_subcommand queue; and __fish_seen_subcommand_from summary" -l endpoint -d 'Admin API base URL' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand queue; and __fish_seen_subcommand_from summary" -l user -d 'User for HTTP Basic authorization (checked by the policy\'s http_server_validate_auth_basic). Not needed from a trusted host' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand queue; and __fish_seen_subcommand_from summary" -l password-file -d 'File whose first line is the password; "-" reads standard input' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand queue; and __fish_seen_subcommand_from summary" -l ca-file -d 'PEM certificate(s) to trust for an https endpoint' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand queue; and __fish_seen_subcommand_from summary" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand queue; and __fish_seen_subcommand_from summary" -l insecure -d 'Do not verify the https endpoint\'s certificate'
complete -c ironpost -n "__fish_ironpost_using_subcommand queue; and __fish_seen_subcommand_from summary" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "summary" -d 'Messages per scheduled queue'
complete -c ironpost -n "__fish_ironpost_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ironpost -n "__fish_ironpost_using_subcommand bounce" -l domain -d 'Recipient domain' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand bounce" -l tenant -d 'Tenant' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand bounce" -l reason -d 'Reason recorded in the bounces' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand bounce" -l endpoint -d 'Admin API base URL' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand bounce" -l user -d 'User for HTTP Basic authorization (checked by the policy\'s http_server_validate_auth_basic). Not needed from a trusted host' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand bounce" -l password-file -d 'File whose first line is the password; "-" reads standard input' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand bounce" -l ca-file -d 'PEM certificate(s) to trust for an https endpoint' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand bounce" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand bounce" -l insecure -d 'Do not verify the https endpoint\'s certificate'
complete -c ironpost -n "__fish_ironpost_using_subcommand bounce" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend" -l domain -d 'Recipient domain' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend" -l tenant -d 'Tenant' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend" -l campaign -d 'Campaign' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend" -l source -d 'Egress source (its pools send from their other sources)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend" -l reason -d 'Reason recorded for the suspension' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend" -l duration -d 'How long, such as "30m" or "1h" (the daemon\'s default if absent)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend" -l endpoint -d 'Admin API base URL' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend" -l user -d 'User for HTTP Basic authorization (checked by the policy\'s http_server_validate_auth_basic). Not needed from a trusted host' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend" -l password-file -d 'File whose first line is the password; "-" reads standard input' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend" -l ca-file -d 'PEM certificate(s) to trust for an https endpoint' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend" -l insecure -d 'Do not verify the https endpoint\'s certificate'
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-list" -l endpoint -d 'Admin API base URL' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-list" -l user -d 'User for HTTP Basic authorization (checked by the policy\'s http_server_validate_auth_basic). Not needed from a trusted host' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-list" -l password-file -d 'File whose first line is the password; "-" reads standard input' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-list" -l ca-file -d 'PEM certificate(s) to trust for an https endpoint' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-list" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-list" -l insecure -d 'Do not verify the https endpoint\'s certificate'
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-list" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-cancel" -l id -d 'Its id (from suspend or suspend-list)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-cancel" -l endpoint -d 'Admin API base URL' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-cancel" -l user -d 'User for HTTP Basic authorization (checked by the policy\'s http_server_validate_auth_basic). Not needed from a trusted host' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-cancel" -l password-file -d 'File whose first line is the password; "-" reads standard input' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-cancel" -l ca-file -d 'PEM certificate(s) to trust for an https endpoint' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-cancel" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-cancel" -l insecure -d 'Do not verify the https endpoint\'s certificate'
complete -c ironpost -n "__fish_ironpost_using_subcommand suspend-cancel" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-list" -l endpoint -d 'Admin API base URL' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-list" -l user -d 'User for HTTP Basic authorization (checked by the policy\'s http_server_validate_auth_basic). Not needed from a trusted host' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-list" -l password-file -d 'File whose first line is the password; "-" reads standard input' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-list" -l ca-file -d 'PEM certificate(s) to trust for an https endpoint' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-list" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-list" -l insecure -d 'Do not verify the https endpoint\'s certificate'
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-list" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-cancel" -l id -d 'Its id (from automation-list)' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-cancel" -l endpoint -d 'Admin API base URL' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-cancel" -l user -d 'User for HTTP Basic authorization (checked by the policy\'s http_server_validate_auth_basic). Not needed from a trusted host' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-cancel" -l password-file -d 'File whose first line is the password; "-" reads standard input' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-cancel" -l ca-file -d 'PEM certificate(s) to trust for an https endpoint' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-cancel" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-cancel" -l insecure -d 'Do not verify the https endpoint\'s certificate'
complete -c ironpost -n "__fish_ironpost_using_subcommand automation-cancel" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand inspect" -l endpoint -d 'Admin API base URL' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand inspect" -l user -d 'User for HTTP Basic authorization (checked by the policy\'s http_server_validate_auth_basic). Not needed from a trusted host' -r
complete -c ironpost -n "__fish_ironpost_using_subcommand inspect" -l password-file -d 'File whose first line is the password; "-" reads standard input' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand inspect" -l ca-file -d 'PEM certificate(s) to trust for an https endpoint' -r -F
complete -c ironpost -n "__fish_ironpost_using_subcommand inspect" -l log-format -d 'How diagnostics are written to stderr: `text` (coloured only when stderr is a terminal and NO_COLOR is unset or empty) or `json` (one JSON object per line, with `timestamp`, `level` and `message`). IRONPOST_LOG sets the filter (default `info`)' -r -f -a "text\t''
json\t''"
complete -c ironpost -n "__fish_ironpost_using_subcommand inspect" -l insecure -d 'Do not verify the https endpoint\'s certificate'
complete -c ironpost -n "__fish_ironpost_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "serve" -d 'Run the MTA daemon'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "signer-supervisor" -d 'Internal: the signer process `serve` starts (not for direct use)'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "check" -d 'Check a policy without starting: run its `init`, load its helper files and keysources, check directory modes; print every problem'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "dkim" -d 'DKIM key tooling: generate keys and check their DNS records'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "dns" -d 'The sending domain\'s DNS posture: records to publish, checks of what is live'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "tls-report" -d 'Print a day\'s TLS report (RFC 8460) as sent or to be sent, with the state of each destination'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "traffic-gen" -d 'Load generator: send mail over SMTP (pipelining, STARTTLS, AUTH) and report msg/s, latency per phase and errors by reply code; `sink` accepts and counts mail for benchmarks'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "queue" -d 'Queues held by the daemon'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "bounce" -d 'Bounce queued messages for a destination domain and/or tenant now'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "suspend" -d 'Suspend delivery for a destination domain, tenant, campaign or egress source (kept across restarts)'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "suspend-list" -d 'List the suspensions in force'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "suspend-cancel" -d 'End a suspension early'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "automation-list" -d 'List what traffic-shaping automation holds: suspensions, egress path overrides and bounces, with their ids'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "automation-cancel" -d 'End an automation suspension, override or bounce early'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "inspect" -d 'Show a spooled message\'s envelope and metadata'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and not __fish_seen_subcommand_from serve signer-supervisor check dkim dns tls-report traffic-gen queue bounce suspend suspend-list suspend-cancel automation-list automation-cancel inspect help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and __fish_seen_subcommand_from dkim" -f -a "keygen" -d 'Generate a private key and print the DNS TXT record to publish'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and __fish_seen_subcommand_from dkim" -f -a "verify-dns" -d 'Check that the DKIM TXT record published for a selector matches a private key. Exits non-zero unless it matches'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and __fish_seen_subcommand_from dns" -f -a "records" -d 'Print the records to publish for a mail domain (zone-file lines with a comment each): SPF from the egress sources, DKIM for each signing key, DMARC, MTA-STS, TLS-RPT, BIMI, TLSA'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and __fish_seen_subcommand_from dns" -f -a "check" -d 'Resolve what is live (through a validating resolver) and grade each record: pass, warn or fail. Exits non-zero on any fail'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and __fish_seen_subcommand_from traffic-gen" -f -a "sink" -d 'Accept and discard mail, counting it: the far end of benchmarks'
complete -c ironpost -n "__fish_ironpost_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "summary" -d 'Messages per scheduled queue'
