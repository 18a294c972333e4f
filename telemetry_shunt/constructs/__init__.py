"""CDK L3 constructs for the isolated telemetry network (``pip install telemetry-shunt[cdk]``).

VPC Lattice has only L1 ``Cfn*`` classes in aws-cdk-lib; these constructs are the L2/L3 layer.
"""
