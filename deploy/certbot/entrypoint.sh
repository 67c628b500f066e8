#!/bin/sh
# certbot beside nginx: the first certificate for $DOMAIN through the webroot nginx
# serves on port 80 (tried again every RETRY_EVERY until DNS and port 80 are
# right), then `certbot renew` every RENEW_EVERY; nginx notices a new certificate
# by itself (its entrypoint.sh).
set -eu
: "${DOMAIN:?set DOMAIN, the name Zoom posts to}"
: "${ACME_EMAIL:?set ACME_EMAIL, where Let's Encrypt writes about the certificate}"
webroot=/var/www/acme
# ACME_SERVER is empty for Let's Encrypt itself; tests point it at Pebble.
set -- --non-interactive --agree-tos --webroot -w "$webroot" ${ACME_SERVER:+--server "$ACME_SERVER"}

until [ -e "/etc/letsencrypt/renewal/$DOMAIN.conf" ]; do
    if certbot certonly "$@" --email "$ACME_EMAIL" --cert-name "$DOMAIN" -d "$DOMAIN"; then
        break
    fi
    echo "certbot: no certificate for $DOMAIN yet; trying again in ${RETRY_EVERY:-600}s"
    sleep "${RETRY_EVERY:-600}"
done

while :; do
    sleep "${RENEW_EVERY:-12h}"
    certbot renew "$@" || echo "certbot: renewal failed; trying again in ${RENEW_EVERY:-12h}"
done
