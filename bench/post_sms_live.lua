-- wrk script: POST /v1/sms with the live key in $KEY, to a number the SMPP
-- simulator delivers (tests/smsc/README.md).
wrk.method = "POST"
wrk.body = '{"to":"+447400123456","body":"Your code is 123456. It expires in 10 minutes."}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
