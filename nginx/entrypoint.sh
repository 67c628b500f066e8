#!/bin/sh
# nginx starts before any certificate exists: until certbot has one for $DOMAIN, a
# self-signed one keeps port 443 up (and port 80 serves the ACME challenge). A loop
# then installs certbot's certificate as soon as it appears or changes (the first
# one, each renewal) and reloads nginx, so no container needs the other's socket.
# The root is read-only: what nginx writes (its configuration with the resolver
# filled in, the certificate it serves, its pid) lives in /run, a tmpfs.
set -eu
: "${DOMAIN:?set DOMAIN, the name Zoom posts to}"
# A host name only: it goes into the configuration as the one name served.
case "$DOMAIN" in
*[!A-Za-z0-9.-]* | .* | *..*)
    echo "nginx: DOMAIN '$DOMAIN' is not a host name" >&2
    exit 1
    ;;
esac
live=/etc/letsencrypt/live/$DOMAIN
tls=/run/nginx/tls
conf=/run/nginx/nginx.conf
mkdir -p "$tls"

install_cert() {
    cp "$live/fullchain.pem" "$tls/fullchain.pem.new"
    cp "$live/privkey.pem" "$tls/privkey.pem.new"
    chmod 0600 "$tls/privkey.pem.new"
    mv "$tls/privkey.pem.new" "$tls/privkey.pem"
    mv "$tls/fullchain.pem.new" "$tls/fullchain.pem"
}

if [ -s "$live/fullchain.pem" ]; then
    install_cert
else
    echo "nginx: no certificate for $DOMAIN yet; serving a self-signed one until certbot has it"
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=$DOMAIN" \
        -keyout "$tls/privkey.pem" -out "$tls/fullchain.pem" 2>/dev/null
fi

resolver=$(awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf)
case "$resolver" in *:*) resolver="[$resolver]" ;; esac
sed -e "s/__RESOLVER__/${resolver:-127.0.0.11}/" -e "s/__DOMAIN__/$DOMAIN/g" /etc/nginx/nginx.conf.in > "$conf"
nginx -t -q -c "$conf"

(
    while sleep "${CERT_CHECK_EVERY:-30}"; do
        if [ -s "$live/fullchain.pem" ] && ! cmp -s "$live/fullchain.pem" "$tls/fullchain.pem"; then
            install_cert
            nginx -c "$conf" -s reload && echo "nginx: installed the certificate for $DOMAIN and reloaded"
        fi
    done
) &

exec nginx -c "$conf" -g 'daemon off;'
