// nginx njs handler: answers an OCSP POST (what `openssl ocsp -url` and most
// clients send) from the tree written by `kxca publish`. The POST body is the
// same DER request whose base64 names the pre-signed file (RFC 5019 GET path),
// so a GET subrequest for that path fetches it (a subrequest, not an internal
// redirect: the static module refuses the POST method). A request with a
// nonce, or for a certificate kxca did not pre-sign, finds no file (404):
// those need `kxca serve`.
function post(r) {
    if (r.method !== 'POST') {
        r.return(405);
        return;
    }
    var body = r.requestBuffer;
    if (!body || body.length === 0) {
        r.return(400);
        return;
    }
    r.subrequest('/ocsp/' + body.toString('base64'), { method: 'GET' })
        .then(function (reply) {
            if (reply.status !== 200) {
                r.return(reply.status);
                return;
            }
            ['ETag', 'Last-Modified', 'Expires', 'Cache-Control'].forEach(function (h) {
                if (reply.headersOut[h]) {
                    r.headersOut[h] = reply.headersOut[h];
                }
            });
            r.headersOut['Content-Type'] = 'application/ocsp-response';
            r.return(200, reply.responseBuffer);
        })
        .catch(function () {
            r.return(500);
        });
}

export default { post };
