"""What function code does on the network and with boto3: scope, connections, guard, clients, proxy."""
