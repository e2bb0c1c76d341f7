-- wrk script: POST /v1/sms with the key in $KEY.
wrk.method = "POST"
wrk.body = '{"to":"+447700900001","body":"Your code is 123456. It expires in 10 minutes."}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
